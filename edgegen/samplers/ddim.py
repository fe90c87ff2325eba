"""DDIM (Song et al. 2021) with eta = 0: a deterministic, first-order sampler.

Mirrors ``diffusers.DDIMScheduler``: integer timesteps, "leading" spacing by default, the previous
timestep taken as ``t - num_train_timesteps // steps`` (also for "trailing"/"linspace", as
diffusers does), and x0 clipped to ``clip_sample_range`` unless the config turns it off.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from edgegen.samplers.base import (
    SamplerBase,
    SchedulerConfig,
    alphas_cumprod,
    predict_x0_eps,
    spaced_timesteps,
)


class DDIMSampler(SamplerBase):
    name = "ddim"
    defaults = {"timestep_spacing": "leading", "clip_sample": True}

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        self._alphas_cumprod = alphas_cumprod(self.config)
        # The "previous" alpha of the last step: 1 (fully denoised) or the first training alpha.
        self._final_alpha = 1.0 if config.set_alpha_to_one else float(self._alphas_cumprod[0])
        self._num_steps = 0

    def set_timesteps(self, num_steps: int) -> None:
        self._check_num_steps(num_steps)
        c = self.config
        t = spaced_timesteps(c.timestep_spacing, num_steps, c.num_train_timesteps, c.steps_offset)
        self.timesteps = (t.round() if c.timestep_spacing == "linspace" else t).astype(np.int64)
        self._num_steps = num_steps

    def _alpha(self, t: int) -> float:
        return float(self._alphas_cumprod[t]) if t >= 0 else self._final_alpha

    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array:
        """One deterministic DDIM update; ``key`` is unused (eta = 0)."""
        self._check_index(i)
        t = int(self.timesteps[i])
        prev_t = t - self.config.num_train_timesteps // self._num_steps
        a_t, a_prev = self._alpha(t), self._alpha(prev_t)
        x = x.astype(mx.float32)
        x0, eps = predict_x0_eps(
            model_output.astype(mx.float32),
            x,
            math.sqrt(a_t),
            math.sqrt(1 - a_t),
            self.config.prediction_type,
        )
        if self.config.clip_sample:
            x0 = mx.clip(x0, -self.config.clip_sample_range, self.config.clip_sample_range)
        return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps

    def add_noise(self, x0: mx.array, noise: mx.array, i: int) -> mx.array:
        """Forward-diffuse x0 to the noise level of step i (img2img starts there)."""
        self._check_index(i)
        a = float(self._alphas_cumprod[int(self.timesteps[i])])
        return math.sqrt(a) * x0.astype(mx.float32) + math.sqrt(1 - a) * noise.astype(mx.float32)
