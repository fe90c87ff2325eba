"""Real-ESRGAN's two generators in MLX: SRVGGNetCompact and RRDBNet (NHWC, images in [0, 1]).

* **SRVGGNetCompact** (``realesr-animevideov3``, ``realesr-general-x4v3``): a plain stack of
  3×3 convolutions with PReLU (or LeakyReLU) at the input resolution, a last convolution to
  ``3·s²`` channels, a pixel shuffle to ``s``× the size, plus the input upsampled by nearest
  neighbour (the network learns the residual).
* **RRDBNet** (ESRGAN, ``RealESRGAN_x4plus``): ``num_block`` residual-in-residual dense blocks
  (three 5-convolution dense blocks each, residuals scaled by 0.2) at the input resolution, then
  two nearest-neighbour ×2 upsamplings with a convolution each, and two convolutions more.

Module paths equal BasicSR's parameter names (``body.3.weight``; ``body.0.rdb2.conv4.bias``),
so a PyTorch checkpoint or an ncnn graph (``converters/esrgan.py``) maps by name; convolution
weights are MLX's (O, kh, kw, I). ``output_scale`` < ``scale`` resizes the network's output
bicubically, as Real-ESRGAN's ×2 and ×3 animevideov3 files do with the ×4 network.

:func:`upscale_tiled` runs either model over a large image tile by tile (see there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from edgegen.errors import ModelError, UsageError
from edgegen.models.blocks import Conv2d

ARCHITECTURES = ("srvggnet-compact", "rrdbnet")
PRE_PAD = 10  # pixels mirrored around the image before the network, as Real-ESRGAN does


@dataclass(frozen=True)
class UpscalerConfig:
    arch: str  # one of ARCHITECTURES
    scale: int  # the network's own upscaling factor
    output_scale: int  # what the model file delivers (≤ scale: bicubic resize after the network)
    num_feat: int = 64
    num_conv: int = 16  # SRVGGNetCompact: body convolutions between the first and the last
    act: str = "prelu"  # SRVGGNetCompact: "prelu" | "leakyrelu" | "relu"
    num_block: int = 23  # RRDBNet: RRDB blocks
    num_grow_ch: int = 32  # RRDBNet: channels each dense layer adds
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ModelError(
                f"upscaler architecture {self.arch!r} is unknown; valid: {ARCHITECTURES}"
            )
        if self.arch == "rrdbnet" and self.scale != 4:
            raise ModelError(f"RRDBNet with scale {self.scale} is not supported; only ×4 is")
        if not 1 <= self.output_scale <= self.scale:
            raise ModelError(f"output scale {self.output_scale} must be in 1..{self.scale}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UpscalerConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        try:
            return cls(**known)
        except TypeError as e:
            raise ModelError(f"upscaler config {d!r} is incomplete: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def context(self) -> int:
        """Input pixels each output pixel depends on, per side (the receptive-field radius):
        what a tile needs around it to come out exactly as in the whole image."""
        if self.arch == "srvggnet-compact":
            return self.num_conv + 2
        return 1 + 15 * self.num_block + 1 + 2  # up-convs at 2× and 4× add < 2 input pixels


def pixel_shuffle(x: mx.array, r: int) -> mx.array:
    """PyTorch's ``pixel_shuffle`` on NHWC: channel ``c·r² + i·r + j`` → pixel (i, j) of ``c``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * r, w * r, c // (r * r))


def upsample_nearest(x: mx.array, r: int) -> mx.array:
    b, h, w, c = x.shape
    x = mx.broadcast_to(x[:, :, None, :, None, :], (b, h, r, w, r, c))
    return x.reshape(b, h * r, w * r, c)


@mx.compile
def _prelu(x: mx.array, slope: mx.array) -> mx.array:
    # One fused pass (MLX's CPU element-wise work is single-threaded: four passes cost 4×).
    return mx.maximum(x, 0) + slope * mx.minimum(x, 0)


class PReLU(nn.Module):
    """Per-channel PReLU; parameter ``weight`` (C,) as in PyTorch."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = mx.full((channels,), 0.25)

    def __call__(self, x: mx.array) -> mx.array:
        return _prelu(x, self.weight)


# Fused LeakyReLUs; a Python-float slope keeps the input's dtype.
_LEAKY = {slope: mx.compile(lambda x, a=slope: mx.maximum(x, a * x)) for slope in (0.1, 0.2)}


class _Leaky(nn.Module):
    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def __call__(self, x: mx.array) -> mx.array:
        return _LEAKY[self.slope](x) if self.slope in _LEAKY else mx.maximum(x, self.slope * x)


def _conv(cin: int, cout: int) -> Conv2d:
    return Conv2d(cin, cout, kernel_size=3, padding=1)


class SRVGGNetCompact(nn.Module):
    def __init__(self, cfg: UpscalerConfig):
        super().__init__()
        self.cfg = cfg
        f = cfg.num_feat

        def act() -> nn.Module:
            if cfg.act == "prelu":
                return PReLU(f)
            return _Leaky(0.1 if cfg.act == "leakyrelu" else 0.0)

        layers: list[nn.Module] = [_conv(cfg.in_channels, f), act()]
        for _ in range(cfg.num_conv):
            layers += [_conv(f, f), act()]
        layers.append(_conv(f, cfg.out_channels * cfg.scale**2))
        self.body = layers

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for layer in self.body:
            y = layer(y)
        return pixel_shuffle(y, self.cfg.scale) + upsample_nearest(x, self.cfg.scale)


class ResidualDenseBlock(nn.Module):
    def __init__(self, f: int, g: int):
        super().__init__()
        self.conv1 = _conv(f, g)
        self.conv2 = _conv(f + g, g)
        self.conv3 = _conv(f + 2 * g, g)
        self.conv4 = _conv(f + 3 * g, g)
        self.conv5 = _conv(f + 4 * g, f)

    def __call__(self, x: mx.array) -> mx.array:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(_LEAKY[0.2](conv(mx.concatenate(feats, axis=-1))))
        return self.conv5(mx.concatenate(feats, axis=-1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, f: int, g: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(f, g)
        self.rdb2 = ResidualDenseBlock(f, g)
        self.rdb3 = ResidualDenseBlock(f, g)

    def __call__(self, x: mx.array) -> mx.array:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, cfg: UpscalerConfig):
        super().__init__()
        self.cfg = cfg
        f, g = cfg.num_feat, cfg.num_grow_ch
        self.conv_first = _conv(cfg.in_channels, f)
        self.body = [RRDB(f, g) for _ in range(cfg.num_block)]
        self.conv_body = _conv(f, f)
        self.conv_up1 = _conv(f, f)
        self.conv_up2 = _conv(f, f)
        self.conv_hr = _conv(f, f)
        self.conv_last = _conv(f, cfg.out_channels)

    def __call__(self, x: mx.array) -> mx.array:
        lrelu = _LEAKY[0.2]

        feat = self.conv_first(x)
        body = feat
        for block in self.body:
            body = block(body)
        feat = feat + self.conv_body(body)
        feat = lrelu(self.conv_up1(upsample_nearest(feat, 2)))
        feat = lrelu(self.conv_up2(upsample_nearest(feat, 2)))
        return self.conv_last(lrelu(self.conv_hr(feat)))


def build_upscaler(cfg: UpscalerConfig) -> nn.Module:
    return SRVGGNetCompact(cfg) if cfg.arch == "srvggnet-compact" else RRDBNet(cfg)


# --- Bicubic resize ------------------------------------------------------------------------
# Keys' cubic convolution with a = -0.75 and half-pixel centres, border taps clamped to the
# edge: what PyTorch's bicubic interpolate (align_corners=False, no antialias) and ncnn's Interp
# (resize_type 3) compute. Written as one (out, in) matrix per axis, so a resize is two GEMMs,
# and a tile can be resized with the rows of the whole image's matrix that it owns.

_A = -0.75


def _cubic(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    near = ((_A + 2) * t - (_A + 3)) * t * t + 1
    far = ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, each (size_out, 4), of a bicubic resize along one axis
    from ``size_in`` to ``size_out`` samples (indices clamped to the edge, so they repeat
    there)."""
    src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    base = np.floor(src).astype(np.int64)
    k = np.arange(-1, 3)
    idx = np.clip(base[:, None] + k, 0, size_in - 1)
    return idx, _cubic((src - base)[:, None] - k)


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The same resize as a dense (size_out, size_in) matrix (for checks and small sizes)."""
    idx, w = bicubic_taps(size_in, size_out)
    m = np.zeros((size_out, size_in))
    np.add.at(m, (np.arange(size_out)[:, None].repeat(4, 1), idx), w)
    return m


def resize_bicubic(
    x: mx.array, taps_y: tuple[np.ndarray, np.ndarray], taps_x: tuple[np.ndarray, np.ndarray]
) -> mx.array:
    """NHWC ``x`` resized along H by ``taps_y`` and along W by ``taps_x`` (index, weight pairs
    of :func:`bicubic_taps`, indices relative to ``x``): four gathers per axis."""
    for axis, (idx, w) in ((1, taps_y), (2, taps_x)):
        shape = [1, 1, 1, 1]
        shape[axis] = len(idx)
        acc = None
        for k in range(4):
            term = mx.take(x, mx.array(idx[:, k].astype(np.int32)), axis=axis)
            term = term * mx.array(w[:, k].astype(np.float32)).reshape(shape)
            acc = term if acc is None else acc + term
        x = acc
    return x


# --- Tiled inference -----------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """The core of one tile: the output region (in input pixels) it is responsible for."""

    y0: int
    y1: int
    x0: int
    x1: int


def plan_tiles(h: int, w: int, tile: int) -> list[Tile]:
    """Near-equal cores of at most ``tile`` pixels covering ``h``×``w``."""

    def cuts(n: int) -> list[tuple[int, int]]:
        count = max(1, math.ceil(n / tile))
        edges = [round(i * n / count) for i in range(count + 1)]
        return list(zip(edges[:-1], edges[1:], strict=True))

    return [Tile(y0, y1, x0, x1) for y0, y1 in cuts(h) for x0, x1 in cuts(w)]


def _fade(n_out: int, start: int, stop: int, lo: int, hi: int, blend: int, s: float) -> np.ndarray:
    """Blend weights along one axis for output samples ``start..stop`` of a tile whose core is
    input ``lo..hi``: 1 inside, linear over ``blend`` input pixels each side of an inner edge,
    so neighbouring tiles' weights sum to 1."""
    centres = (np.arange(start, stop) + 0.5) / s  # in input pixels
    w = np.ones(stop - start)
    if lo > 0:
        w *= np.clip((centres - (lo - blend)) / (2 * blend), 0, 1) if blend else centres >= lo
    if hi < n_out / s - 1e-9:
        w *= np.clip(((hi + blend) - centres) / (2 * blend), 0, 1) if blend else centres < hi
    return w


def upscale_tiled(
    model: nn.Module,
    image: np.ndarray,
    out_scale: int,
    tile: int = 256,
    blend: int = 8,
    context: int | None = None,
    pad: int = PRE_PAD,
    dtype: mx.Dtype = mx.float32,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Upscale an (H, W, 3) float image in [0, 1] by ``out_scale``; returns float32 [0, 1].

    The image is first mirrored by ``pad`` pixels on every side (Real-ESRGAN's pre-padding:
    the network's zero-padded borders would otherwise darken the edges), then cut into cores
    of at most ``tile`` pixels. Each core is run with ``blend + context`` pixels of the
    (padded) image around it (``context`` defaults to the network's receptive-field radius,
    capped at 32), and its output is kept over the core plus ``blend`` pixels each side,
    cross-faded linearly with the neighbouring tile's over those ``2·blend`` pixels. With the
    full receptive field as context, tiles reproduce the untiled result up to float rounding;
    with less (RRDBNet's field is ~350 pixels) the cross-fade hides the difference. Memory is
    one tile's activations plus the output image.
    """
    cfg: UpscalerConfig = model.cfg
    if tile < 16:
        raise UsageError(f"tile size {tile} is too small; use at least 16 pixels")
    if blend < 0 or 2 * blend > tile:
        raise UsageError(f"tile blend {blend} must be in 0..{tile // 2}")
    ctx = min(cfg.context, 32) if context is None else context
    h, w, _ = image.shape
    s, net_s, p = out_scale, cfg.scale, pad
    padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect") if p else image
    hp, wp = h + 2 * p, w + 2 * p
    out = np.zeros((h * s, w * s, 3), dtype=np.float32)
    resize = s != net_s
    if resize:  # over the padded image, as the network's own bicubic layer sees it
        full_y, full_x = bicubic_taps(hp * net_s, hp * s), bicubic_taps(wp * net_s, wp * s)
    tiles = plan_tiles(h, w, tile)
    margin = blend + ctx
    # Each core must hold both of its cross-fades.
    blend = min(blend, *((min(t.y1 - t.y0, t.x1 - t.x0)) // 2 for t in tiles))
    for n, t in enumerate(tiles):
        # The window in padded coordinates: at the image's edges it takes in the mirrored border.
        iy0, iy1 = max(0, t.y0 + p - margin), min(hp, t.y1 + p + margin)
        ix0, ix1 = max(0, t.x0 + p - margin), min(wp, t.x1 + p + margin)
        y = model(mx.array(padded[None, iy0:iy1, ix0:ix1]).astype(dtype))
        # Output pixels this tile writes (core plus blend margin), and the same in padded space.
        oy0, oy1 = max(0, (t.y0 - blend) * s), min(h * s, (t.y1 + blend) * s)
        ox0, ox1 = max(0, (t.x0 - blend) * s), min(w * s, (t.x1 + blend) * s)
        py, px = slice(oy0 + p * s, oy1 + p * s), slice(ox0 + p * s, ox1 + p * s)
        if resize:
            ty = _window(full_y, py, iy0 * net_s, iy1 * net_s)
            tx = _window(full_x, px, ix0 * net_s, ix1 * net_s)
            y = resize_bicubic(y.astype(mx.float32), ty, tx)
        else:
            y = y[:, py.start - iy0 * s : py.stop - iy0 * s, px.start - ix0 * s : px.stop - ix0 * s]
        part = np.array(y[0].astype(mx.float32))
        wy = _fade(h * s, oy0, oy1, t.y0, t.y1, blend, s)
        wx = _fade(w * s, ox0, ox1, t.x0, t.x1, blend, s)
        out[oy0:oy1, ox0:ox1] += part * (wy[:, None, None] * wx[None, :, None])
        if on_tile is not None:
            on_tile(n + 1, len(tiles))
    return out


def _window(
    taps: tuple[np.ndarray, np.ndarray], rows: slice, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """The taps of output ``rows``, indices made relative to a tile whose window is source
    samples ``lo..hi``; every tap must fall inside it."""
    idx, w = taps[0][rows], taps[1][rows]
    if idx.min() < lo or idx.max() >= hi:  # a margin too small for the taps: a bug
        raise AssertionError("a tile's resize reaches outside its window")
    return idx - lo, w
