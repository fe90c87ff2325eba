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


def attention(q: mx.array, k: mx.array, v: mx.array, heads: int) -> mx.array:
    """Multi-head softmax attention over ``(batch, tokens, heads × dim)`` arrays."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(0, 2, 1, 3)
    k = k.reshape(b, m, heads, d).transpose(0, 2, 1, 3)
    v = v.reshape(b, m, heads, d).transpose(0, 2, 1, 3)
    o = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(d))
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
        return value * nn.gelu(gate)


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
