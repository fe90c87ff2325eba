"""Latent Consistency Model sampler (Luo et al. 2023) for LCM-distilled models and LCM-LoRAs.

Mirrors ``diffusers.LCMScheduler``: timesteps are a subset of the distillation schedule
(``original_inference_steps`` evenly spaced points, ``timestep_spacing`` is ignored); each step
predicts the clean latent through the consistency boundary condition and, except on the last
step, re-noises it to the next timestep with fresh noise from ``key``.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from edgegen.errors import UsageError
from edgegen.samplers.base import (
    SamplerBase,
    SchedulerConfig,
    alphas_cumprod,
    predict_x0_eps,
    step_noise,
)

SIGMA_DATA = 0.5  # the data standard deviation the consistency parametrisation assumes


class LCMSampler(SamplerBase):
    name = "lcm"
    # LCMScheduler assumes SD's betas when the config does not say; it ignores timestep_spacing.
    defaults = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        self._alphas_cumprod = alphas_cumprod(self.config)

    def set_timesteps(self, num_steps: int) -> None:
        self._check_num_steps(num_steps)
        c = self.config
        original = c.original_inference_steps
        if not 1 <= original <= c.num_train_timesteps:
            raise UsageError(
                f"lcm: original_inference_steps {original} must be in 1..{c.num_train_timesteps}"
            )
        if num_steps > original:
            raise UsageError(
                f"lcm: steps {num_steps} exceeds the distillation schedule's {original} steps"
            )
        k = c.num_train_timesteps // original
        schedule = (np.arange(1, original + 1) * k - 1)[::-1]
        picks = np.floor(np.linspace(0, original, num_steps, endpoint=False)).astype(np.int64)
        self.timesteps = schedule[picks].astype(np.int64)

    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array:
        """Consistency step: denoise fully, then re-noise to the next timestep (not the last)."""
        self._check_index(i)
        c = self.config
        t = int(self.timesteps[i])
        a_t = float(self._alphas_cumprod[t])
        # Boundary condition: c_skip -> 1 and c_out -> 0 as t -> 0, so f(x, 0) = x.
        scaled = t * c.timestep_scaling
        c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
        c_out = scaled / math.sqrt(scaled**2 + SIGMA_DATA**2)
        x = x.astype(mx.float32)
        x0, _ = predict_x0_eps(
            model_output.astype(mx.float32),
            x,
            math.sqrt(a_t),
            math.sqrt(1 - a_t),
            c.prediction_type,
        )
        if c.clip_sample:
            x0 = mx.clip(x0, -c.clip_sample_range, c.clip_sample_range)
        denoised = c_out * x0 + c_skip * x
        if i == len(self.timesteps) - 1:
            return denoised
        a_next = float(self._alphas_cumprod[int(self.timesteps[i + 1])])
        noise = step_noise(x.shape, key)
        return math.sqrt(a_next) * denoised + math.sqrt(1 - a_next) * noise

    def add_noise(self, x0: mx.array, noise: mx.array, i: int) -> mx.array:
        """Forward-diffuse x0 to the timestep of step i."""
        self._check_index(i)
        a = float(self._alphas_cumprod[int(self.timesteps[i])])
        return math.sqrt(a) * x0.astype(mx.float32) + math.sqrt(1 - a) * noise.astype(mx.float32)
