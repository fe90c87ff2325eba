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

from edgegen.device import on_gpu
from edgegen.models.blocks import GroupNorm
from edgegen.models.fastmath import geglu, softmax_numerator


def _row_max(s: mx.array) -> mx.array:
    """Max over the last axis, keepdims. MLX reduces a contiguous last axis one scalar at a
    time; folding it into (a, b) and reducing over ``a`` first compares whole ``b``-long rows
    with vector instructions (2.5× faster at 4096 keys), leaving a short scalar pass."""
    m = s.shape[-1]
    b = next((f for f in (256, 128, 64) if m % f == 0 and m // f >= 4), None)
    if b is None:
        return s.max(axis=-1, keepdims=True)
    return s.reshape(*s.shape[:-1], m // b, b).max(axis=-2).max(axis=-1, keepdims=True)


# Score elements per block: 1M floats (4 MB) stays in this CPU's L2/L3 through the five
# passes over it (matmul, max, shift, exp, matmul); a whole 4096-token layer is 1 GB.
_BLOCK = 1 << 20


def attention(q: mx.array, k: mx.array, v: mx.array, heads: int) -> mx.array:
    """Multi-head softmax attention over ``(batch, tokens, heads × dim)`` arrays.

    On a GPU this is MLX's fused kernel. On the CPU, (batch × head, query) blocks of scores
    are made cache-sized, the exponential is the polynomial of
    :func:`edgegen.models.fastmath.softmax_numerator`, and the softmax denominator comes out
    of the second matmul: ``v`` gets a column of ones, so ``p @ [v | 1]`` yields the weighted
    sum and the row sum of ``p`` together, and only the ``(tokens, dim)`` result is divided.
    """
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    scale = 1.0 / math.sqrt(d)
    if on_gpu():  # the fused kernel; the hand-tiled path below is for the CPU
        qh, kh, vh = (t.reshape(b, -1, heads, d).transpose(0, 2, 1, 3) for t in (q, k, v))
        o = mx.fast.scaled_dot_product_attention(qh, kh, vh, scale=scale)
        return o.transpose(0, 2, 1, 3).reshape(b, n, c)
    bh = b * heads
    qh = (q * scale).reshape(b, n, heads, d).transpose(0, 2, 1, 3).reshape(bh, n, d)
    kt = k.reshape(b, m, heads, d).transpose(0, 2, 3, 1).reshape(bh, d, m)
    vh = v.reshape(b, m, heads, d).transpose(0, 2, 1, 3).reshape(bh, m, d)
    v1 = mx.concatenate([vh, mx.ones((bh, m, 1), v.dtype)], axis=-1)
    rows = max(1, min(n, _BLOCK // m))  # queries per block
    group = max(1, min(bh, _BLOCK // (rows * m)))  # (batch, head) pairs per block
    outs = []
    for g in range(0, bh, group):
        parts = []
        for i in range(0, n, rows):
            s = (qh[g : g + group, i : i + rows] @ kt[g : g + group]).astype(mx.float32)
            p = softmax_numerator(s - _row_max(s)).astype(v.dtype)
            parts.append(p @ v1[g : g + group])
        outs.append(parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=1))
    o = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=0)
    o = o[..., :d] / o[..., d:]
    return o.reshape(b, heads, n, d).transpose(0, 2, 1, 3).reshape(b, n, c)


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
        # Two matmuls over the halves of ``proj``: each output is contiguous, so the fused
        # value × GELU(gate) loop runs vectorised (a split view of one output would not).
        if not isinstance(self.proj, nn.Linear):
            # A quantized proj packs its weight; run it whole and split the output.
            value, gate = mx.split(self.proj(x), 2, axis=-1)
            return geglu(value, gate)
        inner = self.proj.weight.shape[0] // 2
        w, bias = self.proj.weight, self.proj.bias
        value = mx.addmm(bias[:inner], x, w[:inner].T)
        gate = mx.addmm(bias[inner:], x, w[inner:].T)
        return geglu(value, gate)


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
