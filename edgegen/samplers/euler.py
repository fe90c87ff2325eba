"""Euler discrete sampler (Karras et al. 2022, Algorithm 2 without churn): first order, deterministic.

Mirrors ``diffusers.EulerDiscreteScheduler``. It works in sigma space: latents are
``x0 + sigma * noise`` (so the initial noise is scaled by ``init_noise_sigma`` and the model input
by ``1 / sqrt(sigma**2 + 1)``), timesteps are fractional for "linspace" spacing, and the
schedule can be resampled with Karras sigmas.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from edgegen.samplers.base import (
    SamplerBase,
    SchedulerConfig,
    alphas_cumprod,
    karras_sigmas,
    predict_x0_eps,
    sigma_to_t,
    spaced_timesteps,
    train_sigmas,
)


class EulerSampler(SamplerBase):
    name = "euler"
    supports_karras = True  # diffusers' Euler ancestral has no Karras option

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        self._train_sigmas = train_sigmas(alphas_cumprod(self.config, sigma_floor=True))
        self.sigmas = np.zeros(0, dtype=np.float32)  # per step, plus the final level

    def set_timesteps(self, num_steps: int) -> None:
        self._check_num_steps(num_steps)
        c = self.config
        t = spaced_timesteps(c.timestep_spacing, num_steps, c.num_train_timesteps, c.steps_offset)
        t = t.astype(np.float32)
        sigmas = np.interp(t, np.arange(len(self._train_sigmas)), self._train_sigmas)
        final = 0.0
        if self.supports_karras:
            if c.use_karras_sigmas:
                sigmas = karras_sigmas(sigmas[-1], sigmas[0], num_steps)
                t = sigma_to_t(sigmas, np.log(self._train_sigmas))
            if c.final_sigmas_type == "sigma_min":
                final = float(self._train_sigmas[0])
        self.sigmas = np.concatenate([sigmas, [final]]).astype(np.float32)
        self.timesteps = t.astype(np.float32)

    @property
    def init_noise_sigma(self) -> float:
        """Scale of the initial gaussian noise: the largest sigma (diffusers' convention)."""
        top = float((self.sigmas if len(self.sigmas) else self._train_sigmas).max())
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return top
        return math.sqrt(top * top + 1)

    def scale_model_input(self, x: mx.array, i: int) -> mx.array:
        """The model was trained on unit-variance inputs: divide by sqrt(sigma**2 + 1)."""
        self._check_index(i)
        return x / math.sqrt(float(self.sigmas[i]) ** 2 + 1)

    def _predict_x0(self, model_output: mx.array, x: mx.array, sigma: float) -> mx.array:
        # Our latents are x0 + sigma * noise; the variance-preserving form divides by
        # sqrt(sigma**2 + 1), which is what the model's parametrisation refers to.
        alpha = 1 / math.sqrt(sigma * sigma + 1)
        x0, _ = predict_x0_eps(
            model_output.astype(mx.float32),
            x * alpha,
            alpha,
            sigma * alpha,
            self.config.prediction_type,
        )
        return x0

    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array:
        """Move along the ODE direction (x - x0) / sigma to the next sigma; ``key`` is unused."""
        self._check_index(i)
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        x = x.astype(mx.float32)
        x0 = self._predict_x0(model_output, x, sigma)
        # diffusers writes x + (x - x0) / sigma * (sigma_next - sigma); this equal form does not
        # cancel two numbers of size sigma_max (2e4 on a cosine schedule) in float32.
        return x0 + (x - x0) * (sigma_next / sigma)

    def add_noise(self, x0: mx.array, noise: mx.array, i: int) -> mx.array:
        """Noise x0 to sigma of step i; unlike DDIM the result is not rescaled (sigma space)."""
        self._check_index(i)
        return x0.astype(mx.float32) + noise.astype(mx.float32) * float(self.sigmas[i])
