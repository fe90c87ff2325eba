"""diffusers' UNet2DConditionModel in MLX (SD 1.x / 2.x, and SDXL's text-time conditioning).

Channels-last throughout: ``x`` is ``(batch, height, width, channels)``. Submodules carry
diffusers' names (``down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k``) so the weight
rules in ``edgegen.converters.rules_unet`` are identity plus layout transforms.

The head-count quirk: diffusers' config key ``attention_head_dim`` is, for every UNet2DCondition
checkpoint, the number of heads (``num_attention_heads`` must be unset; diffusers itself refuses
it). SD1 gives one count for all blocks (8 heads of C/8 channels); SD2 gives one per block
(5, 10, 20, 20: 64 channels a head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.errors import UnsupportedModelError
from edgegen.models.attention import Transformer2DModel
from edgegen.models.blocks import (
    Conv2d,
    Downsample2D,
    GroupNorm,
    ResnetBlock2D,
    Upsample2D,
    upsample_nearest,
)
from edgegen.models.embeddings import TimestepEmbedding, timestep_embedding

DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
MID_BLOCKS = ("UNetMidBlock2DCrossAttn",)

# Options of diffusers' UNet2DConditionModel that edgegen implements only at their default
# (SD 1.x / 2.x / XL never change them); any other value is refused by name, not ignored.
_DEFAULT_ONLY: dict[str, Any] = {
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "act_fn": "silu",
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "class_embed_type": None,
    "num_class_embeds": None,
    "class_embeddings_concat": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "attention_type": "default",
    "cross_attention_norm": None,
    "mid_block_only_cross_attention": None,
    "reverse_transformer_layers_per_block": None,
    "num_attention_heads": None,
}


def _per_block(value: Any, n: int, key: str) -> tuple:
    """An int (or bool) for all blocks, or a list with one entry per down block."""
    if isinstance(value, (list, tuple)):
        if len(value) != n or any(isinstance(v, (list, tuple)) for v in value):
            raise UnsupportedModelError(
                f"unet config {key}={value!r}: need one value or {n} (one per down block)"
            )
        return tuple(value)
    return (value,) * n


@dataclass(frozen=True)
class UNetConfig:
    sample_size: int = 64  # latent side of the native resolution (64 → 512 px for SD1)
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True  # cosines first in the timestep sinusoids
    freq_shift: int = 0  # downscale_freq_shift of the sinusoid frequencies
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    )
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    up_block_types: tuple[str, ...] = (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    )
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: tuple[int, ...] = (2, 2, 2, 2)  # resnets per down block (up: one more)
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: tuple[int, ...] = (768, 768, 768, 768)  # text context width per block
    heads: tuple[int, ...] = (8, 8, 8, 8)  # from diffusers' attention_head_dim (see module doc)
    transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)  # SDXL: (1, 2, 10)
    use_linear_projection: bool = False  # SD2/XL: proj_in/out are Linear (else 1×1 conv)
    upcast_attention: bool = False  # fp16 scores in fp32; edgegen always keeps softmax in fp32
    time_embedding_dim: int | None = None  # default block_out_channels[0] * 4
    time_cond_proj_dim: int | None = None  # LCM-distilled UNets: guidance-scale embedding
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    addition_embed_type: str | None = None  # "text_time" for SDXL
    addition_time_embed_dim: int | None = None  # SDXL: 256 per time id
    projection_class_embeddings_input_dim: int | None = None  # SDXL: 2816 = 1280 + 6 × 256

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        name = d.get("_class_name", "UNet2DConditionModel")
        if name != "UNet2DConditionModel":
            raise UnsupportedModelError(
                f"unet is a {name}; edgegen supports UNet2DConditionModel (SD 1.x, 2.x, XL)"
            )
        for key, default in _DEFAULT_ONLY.items():
            if d.get(key, default) != default:
                raise UnsupportedModelError(
                    f"unet config {key}={d[key]!r} is not supported (only {default!r})"
                )
        down = tuple(d.get("down_block_types", cls.down_block_types))
        up = tuple(d.get("up_block_types", cls.up_block_types))
        mid = d.get("mid_block_type", cls.mid_block_type)
        for kind, types, known in (("down", down, DOWN_BLOCKS), ("up", up, UP_BLOCKS)):
            for t in types:
                if t not in known:
                    raise UnsupportedModelError(
                        f"unet {kind} block type {t!r} is not supported; known: {', '.join(known)}"
                    )
        if mid is not None and mid not in MID_BLOCKS:
            raise UnsupportedModelError(
                f"unet mid block type {mid!r} is not supported; known: {', '.join(MID_BLOCKS)}"
            )
        channels = tuple(d.get("block_out_channels", cls.block_out_channels))
        n = len(channels)
        if len(down) != n or len(up) != n:
            raise UnsupportedModelError(
                f"unet has {len(down)} down and {len(up)} up blocks for {n} block_out_channels"
            )
        add = d.get("addition_embed_type")
        if add not in (None, "text_time"):
            raise UnsupportedModelError(
                f"unet addition_embed_type {add!r} is not supported; known: None, 'text_time'"
            )
        if add == "text_time" and (
            d.get("addition_time_embed_dim") is None
            or d.get("projection_class_embeddings_input_dim") is None
        ):
            raise UnsupportedModelError(
                "unet addition_embed_type 'text_time' needs addition_time_embed_dim and "
                "projection_class_embeddings_input_dim"
            )
        return cls(
            sample_size=int(d.get("sample_size", cls.sample_size)),
            in_channels=int(d.get("in_channels", cls.in_channels)),
            out_channels=int(d.get("out_channels", cls.out_channels)),
            center_input_sample=bool(d.get("center_input_sample", False)),
            flip_sin_to_cos=bool(d.get("flip_sin_to_cos", True)),
            freq_shift=int(d.get("freq_shift", 0)),
            down_block_types=down,
            mid_block_type=mid,
            up_block_types=up,
            block_out_channels=channels,
            layers_per_block=_per_block(d.get("layers_per_block", 2), n, "layers_per_block"),
            downsample_padding=int(d.get("downsample_padding", 1)),
            mid_block_scale_factor=float(d.get("mid_block_scale_factor", 1.0)),
            norm_num_groups=int(d.get("norm_num_groups", 32)),
            norm_eps=float(d.get("norm_eps", 1e-5)),
            cross_attention_dim=_per_block(
                d.get("cross_attention_dim", 1280), n, "cross_attention_dim"
            ),
            heads=_per_block(d.get("attention_head_dim", 8), n, "attention_head_dim"),
            transformer_layers_per_block=_per_block(
                d.get("transformer_layers_per_block", 1), n, "transformer_layers_per_block"
            ),
            use_linear_projection=bool(d.get("use_linear_projection", False)),
            upcast_attention=bool(d.get("upcast_attention", False)),
            time_embedding_dim=d.get("time_embedding_dim"),
            time_cond_proj_dim=d.get("time_cond_proj_dim"),
            conv_in_kernel=int(d.get("conv_in_kernel", 3)),
            conv_out_kernel=int(d.get("conv_out_kernel", 3)),
            addition_embed_type=add,
            addition_time_embed_dim=d.get("addition_time_embed_dim"),
            projection_class_embeddings_input_dim=d.get("projection_class_embeddings_input_dim"),
        )


class _Block(nn.Module):
    """Shared body of the down/up blocks: resnets, optionally each followed by a transformer."""

    def __init__(
        self,
        cfg: UNetConfig,
        ins: list[int],
        out: int,
        temb: int,
        cross: bool,
        heads: int,
        context_dim: int,
        layers: int,
    ):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = [ResnetBlock2D(c, out, temb, groups=g, eps=eps) for c in ins]
        if cross:
            self.attentions = [
                Transformer2DModel(heads, out // heads, out, context_dim, layers, groups=g)
                for _ in ins
            ]

    def layer(self, i: int, x: mx.array, temb: mx.array, context: mx.array) -> mx.array:
        x = self.resnets[i](x, temb)
        if "attentions" in self:
            x = self.attentions[i](x, context)
        return x


class DownBlock(_Block):
    """CrossAttnDownBlock2D / DownBlock2D; returns the output and the skip states it saves."""

    def __init__(self, cfg: UNetConfig, i: int, in_channels: int, temb: int):
        out = cfg.block_out_channels[i]
        n = cfg.layers_per_block[i]
        cross = cfg.down_block_types[i] == "CrossAttnDownBlock2D"
        super().__init__(
            cfg,
            [in_channels] + [out] * (n - 1),
            out,
            temb,
            cross,
            cfg.heads[i],
            cfg.cross_attention_dim[i],
            cfg.transformer_layers_per_block[i],
        )
        if i < len(cfg.block_out_channels) - 1:
            self.downsamplers = [Downsample2D(out, padding=cfg.downsample_padding)]

    def __call__(
        self, x: mx.array, temb: mx.array, context: mx.array
    ) -> tuple[mx.array, list[mx.array]]:
        skips = []
        for i in range(len(self.resnets)):
            x = self.layer(i, x, temb, context)
            skips.append(x)
        if "downsamplers" in self:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(_Block):
    """CrossAttnUpBlock2D / UpBlock2D: each resnet takes the input concatenated with a skip."""

    def __init__(self, cfg: UNetConfig, i: int, prev_channels: int, temb: int):
        rev = list(reversed(cfg.block_out_channels))
        out = rev[i]
        skip_in = rev[min(i + 1, len(rev) - 1)]
        n = list(reversed(cfg.layers_per_block))[i] + 1
        ins = [
            (prev_channels if j == 0 else out) + (skip_in if j == n - 1 else out) for j in range(n)
        ]
        k = len(rev) - 1 - i  # the matching down block
        super().__init__(
            cfg,
            ins,
            out,
            temb,
            cfg.up_block_types[i] == "CrossAttnUpBlock2D",
            cfg.heads[k],
            cfg.cross_attention_dim[k],
            cfg.transformer_layers_per_block[k],
        )
        if i < len(rev) - 1:
            self.upsamplers = [Upsample2D(out)]

    def __call__(
        self,
        x: mx.array,
        temb: mx.array,
        context: mx.array,
        skips: list[mx.array],
        size: tuple[int, int] | None,
    ) -> mx.array:
        for i in range(len(self.resnets)):
            x = mx.concatenate([x, skips.pop()], axis=-1)
            x = self.layer(i, x, temb, context)
        if "upsamplers" in self:
            up = self.upsamplers[0]
            if size is None or size == (2 * x.shape[1], 2 * x.shape[2]):
                x = up(x)
            else:
                # An odd skip size (latent side not a multiple of 2^levels): torch's nearest
                # resize to that size picks exactly the rows of a 2× upsample cropped to it.
                x = up.conv(upsample_nearest(x)[:, : size[0], : size[1]])
        return x


class MidBlock(nn.Module):
    """UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) pairs."""

    def __init__(self, cfg: UNetConfig, temb: int):
        super().__init__()
        c = cfg.block_out_channels[-1]
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        heads = cfg.heads[-1]
        self.resnets = [
            ResnetBlock2D(
                c, c, temb, groups=g, eps=eps, output_scale_factor=cfg.mid_block_scale_factor
            )
            for _ in range(2)
        ]
        self.attentions = [
            Transformer2DModel(
                heads,
                c // heads,
                c,
                cfg.cross_attention_dim[-1],
                cfg.transformer_layers_per_block[-1],
                groups=g,
            )
        ]

    def __call__(self, x: mx.array, temb: mx.array, context: mx.array) -> mx.array:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class UNet2DConditionModel(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        cfg = config
        c0 = cfg.block_out_channels[0]
        temb = cfg.time_embedding_dim or c0 * 4
        self.conv_in = Conv2d(
            cfg.in_channels, c0, cfg.conv_in_kernel, padding=(cfg.conv_in_kernel - 1) // 2
        )
        self.time_embedding = TimestepEmbedding(c0, temb, cfg.time_cond_proj_dim)
        if cfg.addition_embed_type == "text_time":
            self.add_embedding = TimestepEmbedding(cfg.projection_class_embeddings_input_dim, temb)
        self.down_blocks = []
        channels = c0
        for i in range(len(cfg.block_out_channels)):
            self.down_blocks.append(DownBlock(cfg, i, channels, temb))
            channels = cfg.block_out_channels[i]
        if cfg.mid_block_type is not None:
            self.mid_block = MidBlock(cfg, temb)
        self.up_blocks = [
            UpBlock(cfg, i, list(reversed(cfg.block_out_channels))[max(i - 1, 0)], temb)
            for i in range(len(cfg.block_out_channels))
        ]
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, c0, cfg.norm_eps)
        self.conv_out = Conv2d(
            c0, cfg.out_channels, cfg.conv_out_kernel, padding=(cfg.conv_out_kernel - 1) // 2
        )

    def _embed(
        self, timestep: mx.array, batch: int, added_cond: dict[str, mx.array] | None
    ) -> mx.array:
        cfg = self.config
        t = mx.broadcast_to(mx.array(timestep).reshape(-1), (batch,))
        t_emb = timestep_embedding(
            t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift
        )
        added_cond = added_cond or {}
        cond = added_cond.get("timestep_cond")
        emb = self.time_embedding(t_emb.astype(self.conv_in.weight.dtype), cond)
        if cfg.addition_embed_type == "text_time":
            missing = [k for k in ("text_embeds", "time_ids") if k not in added_cond]
            if missing:
                raise ValueError(
                    f"this UNet (addition_embed_type 'text_time') needs added_cond {missing}"
                )
            text, ids = added_cond["text_embeds"], added_cond["time_ids"]
            ids = timestep_embedding(
                ids.reshape(-1), cfg.addition_time_embed_dim, cfg.flip_sin_to_cos, cfg.freq_shift
            ).reshape(text.shape[0], -1)
            add = mx.concatenate([text, ids.astype(text.dtype)], axis=-1)
            emb = emb + self.add_embedding(add.astype(emb.dtype))
        return emb

    def __call__(
        self,
        x: mx.array,
        timestep: mx.array,
        encoder_hidden_states: mx.array,
        added_cond: dict[str, mx.array] | None = None,
    ) -> mx.array:
        """Predict noise (or v) for NHWC latents ``x`` at ``timestep`` (scalar or per sample),
        attending to ``encoder_hidden_states`` ``(batch, tokens, cross_attention_dim)``.

        ``added_cond`` carries SDXL's ``text_embeds`` and ``time_ids`` and LCM's
        ``timestep_cond``, under diffusers' names.
        """
        cfg = self.config
        if cfg.center_input_sample:
            x = 2 * x - 1.0
        temb = self._embed(timestep, x.shape[0], added_cond)
        context = encoder_hidden_states

        # 1. Down: keep every intermediate map for the skip connections.
        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x, saved = block(x, temb, context)
            skips.extend(saved)

        # 2. Middle.
        if "mid_block" in self:
            x = self.mid_block(x, temb, context)

        # 3. Up: consume the skips in reverse; the upsampler targets the next skip's size.
        for block in self.up_blocks:
            mine = skips[len(skips) - len(block.resnets) :]
            del skips[len(skips) - len(block.resnets) :]
            size = tuple(skips[-1].shape[1:3]) if skips else None
            x = block(x, temb, context, mine, size)

        # 4. Out.
        return self.conv_out(self.conv_norm_out(x, silu=True))
