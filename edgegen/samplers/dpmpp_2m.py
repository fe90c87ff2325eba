"""DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in log-SNR, deterministic.

Mirrors ``diffusers.DPMSolverMultistepScheduler`` with its defaults (solver_order=2,
algorithm_type="dpmsolver++", solver_type="midpoint"): the first step, and a step whose
predecessor was not the previous index (img2img starts mid-schedule), are first order; so is
the last step when the final sigma is 0, ``euler_at_final`` is set, or ``lower_order_final`` is
set with fewer than 15 steps. Latents are variance preserving (initial noise scale 1).
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
    karras_sigmas,
    predict_x0_eps,
    sigma_to_t,
    spaced_timesteps,
    train_sigmas,
)


def _alpha_sigma(sigma: float) -> tuple[float, float]:
    """Variance-preserving (alpha_t, sigma_t) for a noise-to-signal ratio sigma."""
    alpha = 1 / math.sqrt(sigma * sigma + 1)
    return alpha, sigma * alpha


class DPMSolverPP2MSampler(SamplerBase):
    name = "dpmpp_2m"
    force_karras = False

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        self._alphas_cumprod = alphas_cumprod(self.config, sigma_floor=True)
        self._train_sigmas = train_sigmas(self._alphas_cumprod)
        self.sigmas = np.zeros(0, dtype=np.float32)
        self._reset()

    def _reset(self) -> None:
        self._prev_x0: mx.array | None = None  # the data prediction of the step before
        self._prev_i: int | None = None

    def set_timesteps(self, num_steps: int) -> None:
        self._check_num_steps(num_steps)
        c, n, T = self.config, num_steps, self.config.num_train_timesteps
        spacing = c.timestep_spacing
        # DPM-Solver spaces n + 1 points and drops t = 0, unlike the other samplers.
        if spacing == "linspace":
            t = np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
        elif spacing == "leading":
            t = (np.arange(n + 1) * (T // (n + 1))).round()[::-1][:-1] + c.steps_offset
        else:
            t = spaced_timesteps(spacing, n, T, c.steps_offset)
        if c.use_karras_sigmas or self.force_karras:
            sigmas = karras_sigmas(float(self._train_sigmas[0]), float(self._train_sigmas[-1]), n)
            t = sigma_to_t(sigmas, np.log(self._train_sigmas))
            if c.beta_schedule != "squaredcos_cap_v2":
                t = t.round()
        else:
            sigmas = np.interp(t, np.arange(T), self._train_sigmas)
        if np.any(np.diff(sigmas) >= 0):  # rounding collisions near num_train_timesteps steps
            raise UsageError(f"{self.name}: {n} steps repeat a noise level; use fewer steps")
        final = 0.0 if c.final_sigmas_type == "zero" else float(self._train_sigmas[0])
        self.sigmas = np.concatenate([sigmas, [final]]).astype(np.float32)
        self.timesteps = t.astype(np.int64)
        self._reset()

    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array:
        """One multistep update; ``key`` is unused (the ODE solver is deterministic)."""
        self._check_index(i)
        c, n = self.config, len(self.timesteps)
        alpha_s, sigma_s = _alpha_sigma(float(self.sigmas[i]))
        x = x.astype(mx.float32)
        x0, _ = predict_x0_eps(
            model_output.astype(mx.float32), x, alpha_s, sigma_s, c.prediction_type
        )
        prev_x0, have_prev = self._prev_x0, i > 0 and self._prev_i == i - 1
        self._prev_x0, self._prev_i = x0, i

        sigma_next = float(self.sigmas[i + 1])
        if sigma_next == 0:
            return x0  # the first-order update's limit: h -> infinity, exp(-h) -> 0
        last = i == n - 1
        first_order = not have_prev or (
            last and (c.euler_at_final or (c.lower_order_final and n < 15))
        )
        alpha_t, sigma_t = _alpha_sigma(sigma_next)
        # log-SNR lambda = log(alpha_t / sigma_t) = -log(sigma) in sigma space.
        lam_s = -math.log(float(self.sigmas[i]))
        h = -math.log(sigma_next) - lam_s
        decay = alpha_t * math.expm1(-h)  # alpha_t * (exp(-h) - 1), accurate for small h
        out = (sigma_t / sigma_s) * x - decay * x0
        if first_order:
            return out
        # Midpoint second-order correction from the slope between the last two predictions.
        lam_prev = -math.log(float(self.sigmas[i - 1]))
        r = (lam_s - lam_prev) / h
        return out - (0.5 * decay / r) * (x0 - prev_x0)

    def add_noise(self, x0: mx.array, noise: mx.array, i: int) -> mx.array:
        """alpha * x0 + sigma * noise at the noise level of step i."""
        self._check_index(i)
        alpha, sigma = _alpha_sigma(float(self.sigmas[i]))
        return alpha * x0.astype(mx.float32) + sigma * noise.astype(mx.float32)


class DPMSolverPP2MKarrasSampler(DPMSolverPP2MSampler):
    """DPM-Solver++(2M) on Karras sigmas, whatever the model's config says."""

    name = "dpmpp_2m_karras"
    force_karras = True
