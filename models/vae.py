"""AutoencoderKL (the Stable Diffusion VAE) in MLX, numerically matching diffusers.

Images and latents are NHWC. ``encode`` maps images in [-1, 1] to the latent Gaussian's mean
and log-variance; ``decode`` maps latents (already divided by ``scaling_factor``, as the
pipeline does) back to images in [-1, 1]. ``decode_tiled`` decodes large latents tile by tile
with linear blending, so a 1080×1920 (or SDXL) decode runs in the memory of one tile.

Module paths equal diffusers' parameter names (``decoder.up_blocks.0.resnets.1.conv1``), so
``converters/rules_vae.py`` is almost the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from edgegen.errors import ModelError, UnsupportedModelError, UsageError
from edgegen.models.blocks import (
    Conv2d,
    Downsample2D,
    GroupNorm,
    ResnetBlock2D,
    SpatialSelfAttention,
    Upsample2D,
)

SUPPORTED_CLASS = "AutoencoderKL"
DOWN_BLOCK = "DownEncoderBlock2D"
UP_BLOCK = "UpDecoderBlock2D"
EPS = 1e-6  # diffusers hard-codes the VAE's norm epsilon; it is not in config.json


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3  # image channels (RGB)
    out_channels: int = 3
    latent_channels: int = 4  # SD 1.x / 2.x / XL; SD3 and FLUX use 16 (different model)
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # one per resolution level
    layers_per_block: int = 2  # resnets per encoder block; the decoder has one more
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215  # SD 1.x / 2.x; SDXL 0.13025
    shift_factor: float | None = None  # None for SD; latents = (z - shift) * scale elsewhere
    latents_mean: tuple[float, ...] | None = None  # per-channel stats some finetunes publish
    latents_std: tuple[float, ...] | None = None
    sample_size: int = 512  # training image size (pixels); a hint only
    force_upcast: bool = True  # the VAE overflows in fp16 (SDXL): decode in fp32
    mid_block_add_attention: bool = True
    use_quant_conv: bool = True  # 1×1 conv after the encoder
    use_post_quant_conv: bool = True  # 1×1 conv before the decoder

    @property
    def scale(self) -> int:
        """Pixels per latent along each axis (8 for SD)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        """Read diffusers' ``vae/config.json``."""
        name = d.get("_class_name")
        if name != SUPPORTED_CLASS:
            raise UnsupportedModelError(
                f"VAE class {name!r} is not supported; supported: {SUPPORTED_CLASS!r}"
            )
        blocks = tuple(int(c) for c in d.get("block_out_channels", cls.block_out_channels))
        for key, kind in (("down_block_types", DOWN_BLOCK), ("up_block_types", UP_BLOCK)):
            types = list(d.get(key, [kind] * len(blocks)))
            bad = [t for t in types if t != kind]
            if bad or len(types) != len(blocks):
                raise UnsupportedModelError(
                    f"VAE {key} {types} is not supported; expected {len(blocks)} × {kind!r}"
                )
        act = d.get("act_fn", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"VAE act_fn {act!r} is not supported; supported: 'silu'")
        groups = int(d.get("norm_num_groups", cls.norm_num_groups))
        if any(c % groups for c in blocks):
            raise ModelError(f"VAE block_out_channels {list(blocks)} do not split into {groups}")
        sample = d.get("sample_size", cls.sample_size)
        if isinstance(sample, list | tuple):
            sample = sample[0]

        def floats(key: str) -> tuple[float, ...] | None:
            v = d.get(key)
            return None if v is None else tuple(float(x) for x in v)

        shift = d.get("shift_factor")
        return cls(
            in_channels=int(d.get("in_channels", cls.in_channels)),
            out_channels=int(d.get("out_channels", cls.out_channels)),
            latent_channels=int(d.get("latent_channels", cls.latent_channels)),
            block_out_channels=blocks,
            layers_per_block=int(d.get("layers_per_block", cls.layers_per_block)),
            norm_num_groups=groups,
            scaling_factor=float(d.get("scaling_factor", cls.scaling_factor)),
            shift_factor=None if shift is None else float(shift),
            latents_mean=floats("latents_mean"),
            latents_std=floats("latents_std"),
            sample_size=int(sample),
            force_upcast=bool(d.get("force_upcast", cls.force_upcast)),
            mid_block_add_attention=bool(d.get("mid_block_add_attention", True)),
            use_quant_conv=bool(d.get("use_quant_conv", True)),
            use_post_quant_conv=bool(d.get("use_post_quant_conv", True)),
        )


class MidBlock(nn.Module):
    """resnet → (attention → resnet): diffusers' UNetMidBlock2D as the VAE builds it."""

    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = [ResnetBlock2D(channels, channels, None, groups, EPS) for _ in range(2)]
        self.attentions = [SpatialSelfAttention(channels, groups, EPS)] if attention else []

    def __call__(self, x: mx.array) -> mx.array:
        x = self.resnets[0](x)
        if self.attentions:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class EncoderBlock(nn.Module):
    """DownEncoderBlock2D: resnets, then (except at the last level) a stride-2 conv."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = [
            ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, EPS) for i in range(layers)
        ]
        # padding=0: the encoder pads bottom/right only (see Downsample2D).
        self.downsamplers = [Downsample2D(cout, True, padding=0)] if downsample else []

    def __call__(self, x: mx.array) -> mx.array:
        for r in self.resnets:
            x = r(x)
        for d in self.downsamplers:
            x = d(x)
        return x


class DecoderBlock(nn.Module):
    """UpDecoderBlock2D: resnets, then (except at the last level) 2× upsampling + conv."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = [
            ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, EPS) for i in range(layers)
        ]
        self.upsamplers = [Upsample2D(cout, True)] if upsample else []

    def __call__(self, x: mx.array) -> mx.array:
        for r in self.resnets:
            x = r(x)
        for u in self.upsamplers:
            x = u(x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g, n = cfg.block_out_channels, cfg.norm_num_groups, len(cfg.block_out_channels)
        self.conv_in = Conv2d(cfg.in_channels, ch[0], kernel_size=3, padding=1)
        self.down_blocks = [
            EncoderBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, g, i < n - 1)
            for i in range(n)
        ]
        self.mid_block = MidBlock(ch[-1], g, cfg.mid_block_add_attention)
        self.conv_norm_out = GroupNorm(g, ch[-1], EPS)
        # Twice the latent channels: mean and log-variance.
        self.conv_out = Conv2d(ch[-1], 2 * cfg.latent_channels, kernel_size=3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g, n = cfg.block_out_channels[::-1], cfg.norm_num_groups, len(cfg.block_out_channels)
        self.conv_in = Conv2d(cfg.latent_channels, ch[0], kernel_size=3, padding=1)
        self.mid_block = MidBlock(ch[0], g, cfg.mid_block_add_attention)
        self.up_blocks = [
            DecoderBlock(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block + 1, g, i < n - 1)
            for i in range(n)
        ]
        self.conv_norm_out = GroupNorm(g, ch[-1], EPS)
        self.conv_out = Conv2d(ch[-1], cfg.out_channels, kernel_size=3, padding=1)

    def __call__(self, z: mx.array) -> mx.array:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


def _ramp(length: int, fade_start: int, fade_end: int) -> np.ndarray:
    """1-D blending weights: linear fade-in over ``fade_start`` samples and fade-out over
    ``fade_end`` samples (0 = an image border, no fade), 1 in between, never 0."""
    w = np.ones(length, dtype=np.float32)
    if fade_start:
        w[:fade_start] = (np.arange(fade_start, dtype=np.float32) + 0.5) / fade_start
    if fade_end:
        w[length - fade_end :] = np.minimum(
            w[length - fade_end :], ((np.arange(fade_end, dtype=np.float32) + 0.5) / fade_end)[::-1]
        )
    return w


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``[0, size)`` with full tiles; the last is flush with the edge."""
    starts = list(range(0, max(size - tile, 0), stride))
    starts.append(max(size - tile, 0))
    return starts


class AutoencoderKL(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        lc = config.latent_channels
        if config.use_quant_conv:
            self.quant_conv = Conv2d(2 * lc, 2 * lc, kernel_size=1)
        if config.use_post_quant_conv:
            self.post_quant_conv = Conv2d(lc, lc, kernel_size=1)

    def encode(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """NHWC images in [-1, 1] → (mean, logvar) of the latent Gaussian, each NHWC with
        ``latent_channels``. logvar is clamped to [-30, 20] as diffusers does. Multiply a sample
        by ``config.scaling_factor`` to get the latents the UNet works on."""
        moments = self.encoder(x)
        if "quant_conv" in self:
            moments = self.quant_conv(moments)
        mean, logvar = mx.split(moments, 2, axis=-1)
        return mean, mx.clip(logvar, -30.0, 20.0)

    def decode(self, z: mx.array) -> mx.array:
        """NHWC latents (already divided by ``scaling_factor``) → NHWC images in [-1, 1]
        (unclipped, as diffusers returns them)."""
        if "post_quant_conv" in self:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def decode_tiled(self, z: mx.array, tile: int = 64, overlap: int = 16) -> mx.array:
        """:meth:`decode` in overlapping ``tile``×``tile`` latent tiles, blended linearly over
        ``overlap`` latents, so peak memory is one tile's activations. Each tile is evaluated
        before the next starts. Identical to :meth:`decode` when one tile covers ``z``; close
        otherwise (each tile's GroupNorm statistics and attention see only the tile)."""
        if tile < 1 or not 0 <= overlap < tile:
            raise UsageError(
                f"tile {tile} / overlap {overlap} invalid: need tile >= 1 and 0 <= overlap < tile"
            )
        b, h, w, _ = z.shape
        if h <= tile and w <= tile:
            return self.decode(z)
        s = self.config.scale
        ys, xs = _tile_starts(h, tile, tile - overlap), _tile_starts(w, tile, tile - overlap)
        out = np.zeros((b, h * s, w * s, self.config.out_channels), dtype=np.float32)
        weight = np.zeros((1, h * s, w * s, 1), dtype=np.float32)
        for i, y0 in enumerate(ys):
            th = min(tile, h)
            # Fade over the region shared with the neighbouring tile (in pixels).
            top = (ys[i - 1] + th - y0) * s if i else 0
            bottom = (y0 + th - ys[i + 1]) * s if i + 1 < len(ys) else 0
            wy = _ramp(th * s, top, bottom)
            for j, x0 in enumerate(xs):
                tw = min(tile, w)
                left = (xs[j - 1] + tw - x0) * s if j else 0
                right = (x0 + tw - xs[j + 1]) * s if j + 1 < len(xs) else 0
                wx = _ramp(tw * s, left, right)
                part = self.decode(z[:, y0 : y0 + th, x0 : x0 + tw])
                wt = (wy[:, None] * wx[None, :])[None, :, :, None]
                ry, rx = slice(y0 * s, (y0 + th) * s), slice(x0 * s, (x0 + tw) * s)
                out[:, ry, rx] += np.array(part.astype(mx.float32)) * wt
                weight[:, ry, rx] += wt
        return mx.array(out / weight).astype(z.dtype)
