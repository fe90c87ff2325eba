"""Convolutional building blocks shared by the UNet and the VAE (NHWC, diffusers names).

Attribute names follow diffusers' parameter names (``norm1``, ``conv1``, ``time_emb_proj``,
``norm2``, ``conv2``, ``conv_shortcut``, ``conv``, ``group_norm``, ``to_q`` … ``to_out.0``) so a
checkpoint maps onto these modules with identity rules plus the ``conv2d`` layout transform.

Everything is channels-last: images and feature maps are ``(batch, height, width, channels)``.
"""

from __future__ import annotations

import math
from functools import cache

import mlx.core as mx
import mlx.nn as nn


@cache
def _group_norm_fn(groups: int, eps: float, silu: bool):
    # One compiled function per (groups, eps, silu): MLX fuses the element-wise tail (subtract,
    # scale, affine, SiLU) into a single pass over the feature map instead of five.
    def fn(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
        b, h, w, c = x.shape
        # Statistics in fp32 even for fp16/bf16 activations: a sum over 64k values overflows
        # or loses all precision in half precision.
        xg = x.astype(mx.float32).reshape(b, h * w, groups, c // groups)
        mean = xg.mean(axis=(1, 3), keepdims=True)
        centred = xg - mean
        var = (centred * centred).mean(axis=(1, 3), keepdims=True)
        y = (centred * mx.rsqrt(var + eps)).reshape(b, h, w, c) * weight + bias
        if silu:
            y = y * mx.sigmoid(y)
        return y.astype(x.dtype)

    return mx.compile(fn)


def group_norm(
    x: mx.array, weight: mx.array, bias: mx.array, groups: int, eps: float, silu: bool = False
) -> mx.array:
    """PyTorch-ordered GroupNorm over an NHWC map (channel ``c`` is in group ``c // (C/groups)``),
    optionally followed by SiLU in the same fused pass."""
    return _group_norm_fn(groups, float(eps), silu)(x, weight, bias)


class GroupNorm(nn.Module):
    """GroupNorm with PyTorch's channel grouping, parameters ``weight`` and ``bias``.

    Not ``nn.GroupNorm(pytorch_compatible=True)``: that one transposes the whole map twice to
    reuse layer_norm; reducing over a (B, HW, G, C/G) view needs no copy.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"{num_channels} channels do not split into {num_groups} groups")
        self.num_groups = num_groups
        self.eps = eps
        self.weight = mx.ones((num_channels,))
        self.bias = mx.zeros((num_channels,))

    def __call__(self, x: mx.array, silu: bool = False) -> mx.array:
        return group_norm(x, self.weight, self.bias, self.num_groups, self.eps, silu)


class ResnetBlock2D(nn.Module):
    """diffusers' ResnetBlock2D ("default" time-embedding norm, SiLU, pre-norm).

    ``x`` is NHWC; ``temb`` (if the block has ``temb_channels``) is ``(batch, temb_channels)``
    and is added per channel after ``conv1``, as diffusers does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        eps: float = 1e-6,
        groups_out: int | None = None,
        output_scale_factor: float = 1.0,
        use_in_shortcut: bool | None = None,
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.output_scale_factor = output_scale_factor
        self.norm1 = GroupNorm(groups, in_channels, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        if temb_channels is not None:
            self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = GroupNorm(groups if groups_out is None else groups_out, out_channels, eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels if use_in_shortcut is None else use_in_shortcut:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def __call__(self, x: mx.array, temb: mx.array | None = None) -> mx.array:
        h = self.conv1(self.norm1(x, silu=True))
        if temb is not None and "time_emb_proj" in self:
            h = h + self.time_emb_proj(nn.silu(temb))[:, None, None, :]
        h = self.conv2(self.norm2(h, silu=True))
        if "conv_shortcut" in self:
            x = self.conv_shortcut(x)
        out = x + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class Downsample2D(nn.Module):
    """Stride-2 3×3 conv (or 2×2 average pool when ``use_conv`` is False).

    ``padding=0`` reproduces diffusers' VAE encoder, which pads one zero row/column on the
    bottom/right only (asymmetric) before an unpadded conv.
    """

    def __init__(
        self,
        channels: int,
        use_conv: bool = True,
        padding: int = 1,
        out_channels: int | None = None,
    ):
        super().__init__()
        self.use_conv = use_conv
        self.padding = padding
        if use_conv:
            self.conv = nn.Conv2d(
                channels, out_channels or channels, kernel_size=3, stride=2, padding=padding
            )
        elif out_channels not in (None, channels):
            raise ValueError("average-pool downsampling cannot change the channel count")

    def __call__(self, x: mx.array) -> mx.array:
        if not self.use_conv:
            b, h, w, c = x.shape
            return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        if self.padding == 0:
            x = mx.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
        return self.conv(x)


def upsample_nearest(x: mx.array, factor: int = 2) -> mx.array:
    """Nearest-neighbour upsampling of an NHWC map by an integer factor (a broadcast, no gather)."""
    b, h, w, c = x.shape
    x = mx.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
    return x.reshape(b, h * factor, w * factor, c)


class Upsample2D(nn.Module):
    """2× nearest-neighbour upsampling followed (if ``use_conv``) by a 3×3 conv."""

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, kernel_size=3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        x = upsample_nearest(x)
        return self.conv(x) if "conv" in self else x


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, chunk: int = 4096) -> mx.array:
    """softmax(q kᵀ · scale) v over ``(batch, heads, tokens, dim)`` arrays.

    Long sequences are processed in query chunks so the score matrix held at once is at most
    ``chunk × tokens`` (a 1080×1920 VAE mid-block has 32k tokens: a full fp32 score matrix
    would be 4 GB).
    """
    n = q.shape[2]
    if n <= chunk:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale)
    parts = [
        mx.fast.scaled_dot_product_attention(q[:, :, i : i + chunk], k, v, scale=scale)
        for i in range(0, n, chunk)
    ]
    return mx.concatenate(parts, axis=2)


class SpatialSelfAttention(nn.Module):
    """Self-attention over all pixels of an NHWC map with a residual connection: the VAE
    mid-block's ``Attention`` (group_norm, to_q/to_k/to_v, to_out.0; one head by default)."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-6, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.group_norm = GroupNorm(groups, channels, eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = [nn.Linear(channels, channels)]

    def __call__(self, x: mx.array) -> mx.array:
        b, h, w, c = x.shape
        d = c // self.heads
        t = self.group_norm(x).reshape(b, h * w, c)

        def heads(y: mx.array) -> mx.array:
            return y.reshape(b, h * w, self.heads, d).transpose(0, 2, 1, 3)

        q, k, v = heads(self.to_q(t)), heads(self.to_k(t)), heads(self.to_v(t))
        if q.dtype != mx.float32:
            # diffusers upcasts this attention: 512-wide half-precision dot products overflow.
            q, k, v = q.astype(mx.float32), k.astype(mx.float32), v.astype(mx.float32)
        o = attention(q, k, v, scale=1.0 / math.sqrt(d)).astype(x.dtype)
        o = o.transpose(0, 2, 1, 3).reshape(b, h * w, c)
        return x + self.to_out[0](o).reshape(b, h, w, c)
