"""Transformer blocks of the SD UNet: diffusers' Transformer2DModel and BasicTransformerBlock.

Names follow diffusers' parameters (``norm``, ``proj_in``, ``transformer_blocks.N.attn1.to_q``,
``ff.net.0.proj``, ``ff.net.2``, ``proj_out``) so weights map with identity rules. ``proj_in``
and ``proj_out`` are always Linear here: SD1 stores them as 1×1 convs, which on a channels-last
map are the same matmul (the weight rule drops the two unit axes).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from edgegen.models.blocks import GroupNorm


# MLX's CPU build on x86 evaluates exp/sigmoid/erf through std::fma without hardware FMA
# (a slow library call): mx.exp runs at ~0.1 G elements/s here, and softmax over the 4096-token
# self-attention (16 × 4096 × 4096 scores a layer) took 4 s. The functions below use only
# multiply/add/select, which mx.compile fuses into one loop the compiler vectorises (~30×
# faster). exp(x) = exp(x/32)^32: a degree-7 polynomial on [-1, 1] (relative error 8e-10) and
# five squarings; end to end within 1e-5 relative in fp32 on [-32, 32].
_EXP_COEFFS = (
    1.0,
    0.9999999403953552,
    0.4999983012676239,
    0.16665375232696533,
    0.041617922484874725,
    0.008231459185481071,
    0.0012677599443122745,
    0.000119406460726168,
)


def _exp32(x: mx.array) -> mx.array:
    """exp(x) for x in [-32, 32]; callers clamp (beyond it the result only needs to be tiny or
    huge, never exact)."""
    r = x * (1.0 / 32.0)
    p = _EXP_COEFFS[-1]
    for c in _EXP_COEFFS[-2::-1]:
        p = p * r + c
    for _ in range(5):
        p = p * p
    return p


@mx.compile
def _softmax_numerator(scores: mx.array, row_max: mx.array) -> mx.array:
    # exp(s - max) for s - max <= 0; below -32 the weight (< 1.3e-14 of the row's largest) is
    # as good as zero, so clamping there only keeps the polynomial in range.
    return _exp32(mx.maximum(scores - row_max, -32.0))


@mx.compile
def silu(x: mx.array) -> mx.array:
    """x · sigmoid(x) = x / (1 + exp(-x)); past |x| = 32 exp's clamp changes nothing in fp32."""
    return x / (1.0 + _exp32(mx.clip(-x, -32.0, 32.0)))


@mx.compile
def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU as diffusers' GEGLU uses, with erf from Abramowitz & Stegun 7.1.26
    (absolute error 1.5e-7): erf(z) = 1 - q(t)·exp(-z²), t = 1 / (1 + 0.3275911 z), z ≥ 0."""
    z = mx.abs(x) * 0.7071067811865476
    t = 1.0 / (1.0 + 0.3275911 * z)
    q = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    tail = q * _exp32(mx.maximum(-z * z, -32.0))  # 1 - erf(|x|/√2)
    # gelu(x) = x/2 · (1 + erf(x/√2)): for x ≥ 0 that is x·(1 - tail/2), for x < 0 x·tail/2.
    return x * mx.where(x >= 0, 1.0 - 0.5 * tail, 0.5 * tail)


def attention(q: mx.array, k: mx.array, v: mx.array, heads: int, chunk: int = 1024) -> mx.array:
    """Multi-head softmax attention over ``(batch, tokens, heads × dim)`` arrays.

    Queries are processed ``chunk`` at a time so each block of scores stays cache-sized
    instead of a 1 GB matrix at 4096 tokens. The softmax denominator comes out of the second
    matmul for free: ``v`` gets a column of ones, so ``p @ [v | 1]`` yields the weighted sum
    and the row sum of ``p`` together, and only the ``(tokens, dim)`` result is divided.
    """
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = (q * (1.0 / math.sqrt(d))).reshape(b, n, heads, d).transpose(0, 2, 1, 3)
    kt = k.reshape(b, m, heads, d).transpose(0, 2, 3, 1)
    v1 = mx.concatenate(
        [v.reshape(b, m, heads, d).transpose(0, 2, 1, 3), mx.ones((b, heads, m, 1), v.dtype)],
        axis=-1,
    )
    outs = []
    for i in range(0, n, chunk):
        s = (q[:, :, i : i + chunk] @ kt).astype(mx.float32)
        p = _softmax_numerator(s, s.max(axis=-1, keepdims=True)).astype(v.dtype)
        o = p @ v1
        outs.append(o[..., :d] / o[..., d:])
    o = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=2)
    return o.transpose(0, 2, 1, 3).reshape(b, n, c)


class Attention(nn.Module):
    """Self- (``context_dim`` None) or cross-attention with bias-free q/k/v projections."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads = heads
        context_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = [nn.Linear(dim, dim)]

    def __call__(self, x: mx.array, context: mx.array | None = None) -> mx.array:
        context = x if context is None else context
        o = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[0](o)


class GEGLU(nn.Module):
    """``proj`` to twice the width, then value × GELU(gate) (exact erf GELU, as diffusers)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def __call__(self, x: mx.array) -> mx.array:
        value, gate = mx.split(self.proj(x), 2, axis=-1)
        return value * gelu(gate)


class FeedForward(nn.Module):
    """diffusers' FeedForward with GEGLU; ``net.1`` is dropout (no parameters, identity here)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = [GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)]

    def __call__(self, x: mx.array) -> mx.array:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention, cross-attention to the text context, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def __call__(self, x: mx.array, context: mx.array) -> mx.array:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    """GroupNorm → ``proj_in`` → transformer blocks over the H×W tokens → ``proj_out`` → + input."""

    def __init__(
        self,
        heads: int,
        head_dim: int,
        in_channels: int,
        context_dim: int,
        num_layers: int = 1,
        groups: int = 32,
    ):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm(groups, in_channels, eps=1e-6)
        self.proj_in = nn.Linear(in_channels, inner)
        self.transformer_blocks = [
            BasicTransformerBlock(inner, heads, context_dim) for _ in range(num_layers)
        ]
        self.proj_out = nn.Linear(inner, in_channels)

    def __call__(self, x: mx.array, context: mx.array) -> mx.array:
        b, h, w, c = x.shape
        t = self.proj_in(self.norm(x).reshape(b, h * w, c))
        for block in self.transformer_blocks:
            t = block(t, context)
        return x + self.proj_out(t).reshape(b, h, w, c)
