"""Timestep and conditioning embeddings of diffusers' UNet2DConditionModel.

``timestep_embedding`` is diffusers' ``get_timestep_embedding`` (the sinusoidal "positional"
projection, computed in fp32 as diffusers does whatever the model dtype); ``TimestepEmbedding``
is the two-layer MLP on top of it (``linear_1`` → SiLU → ``linear_2``), also used by SDXL's
``add_embedding`` over the pooled text embedding and the size/crop "time ids".
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn


def timestep_embedding(
    timesteps: mx.array,
    dim: int,
    flip_sin_to_cos: bool = True,
    freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> mx.array:
    """``(N,)`` timesteps → ``(N, dim)`` sinusoids, frequencies ``max_period^(-i / (half - shift))``.

    ``flip_sin_to_cos`` puts the cosines first (SD's convention); an odd ``dim`` is padded with
    one zero column, as in diffusers.
    """
    half = dim // 2
    exponent = -math.log(max_period) * mx.arange(half, dtype=mx.float32) / (half - freq_shift)
    args = timesteps.astype(mx.float32)[:, None] * mx.exp(exponent)[None, :]
    sin, cos = mx.sin(args), mx.cos(args)
    emb = mx.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = mx.pad(emb, [(0, 0), (0, 1)])
    return emb


class TimestepEmbedding(nn.Module):
    """``linear_1`` → SiLU → ``linear_2``; with ``cond_proj_dim`` (LCM-distilled UNets) a
    bias-free ``cond_proj`` of the guidance embedding is added to the input first."""

    def __init__(self, in_channels: int, time_embed_dim: int, cond_proj_dim: int | None = None):
        super().__init__()
        if cond_proj_dim is not None:
            self.cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False)
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def __call__(self, x: mx.array, condition: mx.array | None = None) -> mx.array:
        if condition is not None:
            if "cond_proj" not in self:
                raise ValueError("this UNet takes no timestep_cond (it has no time_cond_proj_dim)")
            x = x + self.cond_proj(condition)
        return self.linear_2(nn.silu(self.linear_1(x)))
