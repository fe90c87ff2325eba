"""Euler ancestral sampler: an Euler step to a lower sigma, then fresh noise back up.

Mirrors ``diffusers.EulerAncestralDiscreteScheduler``, which shares Euler's schedule but has no
Karras or final-sigma options. With "trailing" spacing and 1-4 steps this is what SDXL-Turbo
ships (SD-Turbo ships plain Euler, trailing); with one step both reduce to x0 = x - sigma * eps.
"""

from __future__ import annotations

import math

import mlx.core as mx

from edgegen.samplers.base import step_noise
from edgegen.samplers.euler import EulerSampler


class EulerAncestralSampler(EulerSampler):
    name = "euler_a"
    supports_karras = False

    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array:
        """Deterministic step to sigma_down, plus sigma_up * noise drawn from ``key``.

        The split keeps the marginal variance right: sigma_down**2 + sigma_up**2 = sigma_next**2.
        No noise is drawn when sigma_up is 0 (the last step), so ``key`` may be None there.
        """
        self._check_index(i)
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        sigma_up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        # Equal to sqrt(sigma_next**2 - sigma_up**2), written so rounding cannot make it NaN.
        sigma_down = sigma_next**2 / sigma
        x = x.astype(mx.float32)
        x0 = self._predict_x0(model_output, x, sigma)
        x = x0 + (x - x0) * (sigma_down / sigma)  # the Euler step, as in euler.py
        if sigma_up > 0:
            x = x + step_noise(x.shape, key) * sigma_up
        return x
