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

from edgegen.device import on_gpu
from edgegen.models.fastmath import silu


@cache
def _group_norm_fn(groups: int, eps: float, silu_after: bool):
    # One compiled function per (groups, eps, silu): MLX fuses the element-wise tail (subtract,
    # scale, affine, SiLU) into a single pass over the feature map instead of many.
    def fn(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
        b, _, _, c = x.shape
        # Statistics in fp32 even for fp16/bf16 activations: a sum over 64k values overflows
        # or loses all precision in half precision. Per-channel sums over the pixels first
        # (a fast column reduction), then per group: reducing a (B, HW, G, C/G) view over
        # two axes at once is several times slower on the CPU.
        xf = x.astype(mx.float32)
        mean = xf.mean(axis=(1, 2)).reshape(b, groups, -1).mean(axis=-1)
        centred = xf - mx.repeat(mean, c // groups, axis=1)[:, None, None, :]
        # Two-pass variance: E[x²] - E[x]² cancels catastrophically when |mean| >> std.
        var = (centred * centred).mean(axis=(1, 2)).reshape(b, groups, -1).mean(axis=-1)
        inv = mx.repeat(mx.rsqrt(var + eps), c // groups, axis=1)[:, None, None, :]
        y = centred * (inv * weight) + bias
        if silu_after:
            y = silu(y)
        return y.astype(x.dtype)

    return mx.compile(fn)


def group_norm(
    x: mx.array, weight: mx.array, bias: mx.array, groups: int, eps: float, silu: bool = False
) -> mx.array:
    """PyTorch-ordered GroupNorm over an NHWC map (channel ``c`` is in group ``c // (C/groups)``),
    optionally followed by SiLU in the same fused pass."""
    return _group_norm_fn(groups, float(eps), silu)(x, weight, bias)


# --- Convolution -------------------------------------------------------------------------
# On the CPU, mx.conv2d builds a 9×-sized im2col copy of the input before one GEMM; on large
# VAE maps that copy costs about as much as the arithmetic. Two layouts avoid it:
#
# * "shifted taps": pad the map, view it as rows of (H+3)·(W+2) pixels, and every 3×3 tap is
#   a *contiguous* row slice of that view; nine GEMMs accumulate (addmm) into an output with
#   two junk columns per row, cropped at the end. No copy beyond the padding.
# * Winograd F(2×2, 3×3): 16 GEMMs over 2×2 output tiles do the work of 36 — 2.25× fewer
#   multiplies — for an input/output transform that is cheap next to GEMMs with many
#   channels. Exact in exact arithmetic; in fp32 it differs from direct convolution by ~1e-7.
#
# On a GPU (Apple silicon), mx.conv2d is already fast: these paths are CPU-only.

_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def _winograd_input(xp: mx.array, th: int, tw: int) -> list[mx.array]:
    # Bᵀ d B for every 4×4 input tile d (stride 2), rows first (contiguous row slices).
    r = [xp[:, i : i + 2 * th : 2] for i in range(4)]
    out = []
    for t in (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]):
        c = [t[:, :, i : i + 2 * tw : 2] for i in range(4)]
        out += [c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]]
    return out


def _winograd_output(m: list[mx.array], bias: mx.array) -> mx.array:
    # Aᵀ M A per tile, then the four 2×2 output phases interleaved into the full map.
    r0 = [m[j] + m[4 + j] + m[8 + j] for j in range(4)]
    r1 = [m[4 + j] - m[8 + j] - m[12 + j] for j in range(4)]
    y = [
        f(r) + bias
        for r in (r0, r1)
        for f in (lambda r: r[0] + r[1] + r[2], lambda r: r[1] - r[2] - r[3])
    ]
    b, th, tw, co = y[0].shape
    y = mx.stack(y, axis=3).reshape(b, th, tw, 2, 2, co).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * th, 2 * tw, co)


_winograd_input_c = mx.compile(_winograd_input)
_winograd_output_c = mx.compile(_winograd_output)


# Winograd works band by band (rows of tiles) so the 16 transformed inputs and products of a
# band stay in cache: on a 512×512 map the unbanded version streams ~1 GB of temporaries
# through memory and ran at half the speed. MLX evaluates the concatenated bands depth-first,
# one band's graph after the other, so no explicit eval is needed.
_BAND_BYTES = 16 * 2**20


def conv3x3_winograd(x: mx.array, u: mx.array, bias: mx.array) -> mx.array:
    """Same-padded 3×3 convolution of NHWC ``x``; ``u`` is :func:`winograd_weights`' output."""
    b, h, w, c = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = mx.pad(x, [(0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)])
    co = u.shape[-1]
    rows = max(1, _BAND_BYTES // (16 * b * tw * max(c, co) * x.dtype.size))
    bands = []
    for t0 in range(0, th, rows):
        n = min(rows, th - t0)
        v = _winograd_input_c(xp[:, 2 * t0 : 2 * t0 + 2 * n + 2], n, tw)
        m = [(v[i].reshape(-1, c) @ u[i]).reshape(b, n, tw, co) for i in range(16)]
        bands.append(_winograd_output_c(m, bias))
    y = bands[0] if len(bands) == 1 else mx.concatenate(bands, axis=1)
    return y if (2 * th, 2 * tw) == (h, w) else y[:, :h, :w]


def winograd_weights(weight: mx.array) -> mx.array:
    """G g Gᵀ of every (out, in) 3×3 kernel: (O, 3, 3, I) → (16, I, O), computed in fp32."""
    g = mx.array(_WINOGRAD_G)
    u = mx.einsum("ai,oijc,bj->abco", g, weight.astype(mx.float32), g)
    return u.reshape(16, weight.shape[3], weight.shape[0]).astype(weight.dtype)


# The shifted-taps GEMMs are thin (K = C_in, N = C_out, 64 each in Real-ESRGAN), so they are
# bound by memory traffic: over a whole 300×300 map, nine passes over input and output stream
# ~400 MB through memory and ran at 38 GFLOPS. Bands of rows whose input fits in L2/L3 ran at
# 65 GFLOPS, 1.8× faster. Each band reads straight from the padded map (views, no halo copies).
_SHIFTED_BAND_BYTES = 2 * 2**20


def conv3x3_shifted(x: mx.array, taps: mx.array, bias: mx.array) -> mx.array:
    """Same-padded 3×3 convolution of NHWC ``x`` as nine GEMMs over contiguous row slices;
    ``taps`` is the (9, I, O) kernel, tap index 3·dy + dx. Large maps go in bands of rows."""
    b, h, w, c = x.shape
    wp = w + 2
    # One extra bottom row so the last tap's slice stays inside the buffer.
    xp = mx.pad(x, [(0, 0), (1, 2), (1, 1), (0, 0)]).reshape(b, (h + 3) * wp, c)
    rows = max(1, _SHIFTED_BAND_BYTES // (b * wp * c * x.dtype.size))
    bands = []
    for r0 in range(0, h, rows):
        n = min(rows, h - r0)
        out = None
        for i in range(9):
            off = (r0 + i // 3) * wp + i % 3
            a = xp[:, off : off + n * wp]
            out = a @ taps[i] if out is None else mx.addmm(out, a, taps[i])
        bands.append(out.reshape(b, n, wp, -1)[:, :, :w])
    y = bands[0] if len(bands) == 1 else mx.concatenate(bands, axis=1)
    return y + bias


def conv3x3_narrow(x: mx.array, taps: mx.array, bias: mx.array) -> mx.array:
    """Same-padded 3×3 convolution with few output channels (an RGB head): one GEMM onto all
    nine taps' outputs side by side, then nine shifted slices summed. Nine GEMMs three columns
    wide would each stream the whole input for almost no arithmetic."""
    b, h, w, c = x.shape
    wp, co = w + 2, taps.shape[-1]
    xp = mx.pad(x, [(0, 0), (1, 2), (1, 1), (0, 0)]).reshape(b, (h + 3) * wp, c)
    y = xp @ taps.transpose(1, 0, 2).reshape(c, 9 * co)
    out = bias
    for i in range(9):
        off = (i // 3) * wp + i % 3
        out = out + y[:, off : off + h * wp, i * co : (i + 1) * co]
    return out.reshape(b, h, wp, co)[:, :, :w]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters: ``weight`` (O, kh, kw, I), ``bias``) that, on the CPU,
    runs 1×1 convolutions as one GEMM and same-padded 3×3 ones with the faster layouts above.

    The rearranged kernels are cached on first use and rebuilt if ``weight`` is replaced
    (Winograd kernels take 16/9 of the weight's memory).
    """

    def _cached(self, kind: str) -> mx.array:
        cache_ = self.__dict__.setdefault("_kernels", {})
        hit = cache_.get(kind)
        if hit is None or hit[0] is not self.weight:
            w = self.weight
            k = winograd_weights(w) if kind == "winograd" else w.reshape(w.shape[0], 9, -1)
            if kind == "taps":
                k = mx.contiguous(k.transpose(1, 2, 0))
            # Lazy: evaluated once as part of the first forward pass, then kept.
            hit = cache_[kind] = (w, k)
        return hit[1]

    def __call__(self, x: mx.array) -> mx.array:
        o, kh, kw, i = self.weight.shape
        plain = self.stride == (1, 1) and self.dilation == 1 and self.groups == 1
        if not plain or on_gpu():
            return super().__call__(x)
        bias = self.bias if "bias" in self else mx.zeros((o,), dtype=x.dtype)
        if (kh, kw) == (1, 1) and self.padding == (0, 0):
            return x @ self.weight.reshape(o, i).T + bias
        if (kh, kw) == (3, 3) and self.padding == (1, 1):
            # Winograd pays off once the GEMMs have enough channels; for few channels (the
            # VAE's conv_in from 4 latent channels) its transforms would dominate.
            if min(o, i) >= 128:
                return conv3x3_winograd(x, self._cached("winograd"), bias)
            if o <= 16:
                return conv3x3_narrow(x, self._cached("taps"), bias)
            return conv3x3_shifted(x, self._cached("taps"), bias)
        return super().__call__(x)


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
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        if temb_channels is not None:
            self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = GroupNorm(groups if groups_out is None else groups_out, out_channels, eps)
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels if use_in_shortcut is None else use_in_shortcut:
            self.conv_shortcut = Conv2d(in_channels, out_channels, kernel_size=1)

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
            self.conv = Conv2d(
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
            self.conv = Conv2d(channels, out_channels or channels, kernel_size=3, padding=1)

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
