"""CLIP text encoder in MLX, numerically matching transformers' ``CLIPTextModel`` and
``CLIPTextModelWithProjection``.

One class serves every Stable Diffusion text encoder:

- SD 1.x: OpenAI CLIP ViT-L/14 text tower (12 layers, ``quick_gelu``).
- SD 2.x: OpenCLIP ViT-H/14 text tower (``gelu``). diffusers stores it already cut to the
  penultimate layer (23 of 24 layers), so matching transformers on that folder is all it takes.
- SDXL: CLIP-L (``text_encoder``) and OpenCLIP bigG with a text projection (``text_encoder_2``).

Submodules are named after transformers' parameter paths (``text_model.encoder.layers.3.
self_attn.q_proj``) so the weight mapping in ``rules_clip`` is nearly the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.errors import ModelError, UnsupportedModelError, UsageError

ARCHITECTURES = {"CLIPTextModel": False, "CLIPTextModelWithProjection": True}  # → with_projection
ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408  # CLIP BPE vocabulary (SD 1.x / 2.x / XL all share it)
    hidden_size: int = 768  # 768 CLIP-L, 1024 OpenCLIP-H, 1280 OpenCLIP-bigG
    intermediate_size: int = 3072  # MLP width, 4 × hidden_size in every SD encoder
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77  # CLIP's fixed context length
    hidden_act: str = "quick_gelu"  # OpenAI CLIP; OpenCLIP models use exact "gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768  # text_projection output width (only with a projection)
    # transformers pools at argmax(input_ids) when this is 2 (configs written before
    # transformers PR #24773, which is most SD checkpoints), else at the first eos_token_id.
    eos_token_id: int = 2
    with_projection: bool = False  # CLIPTextModelWithProjection (SDXL's text_encoder_2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CLIPTextConfig:
        archs = d.get("architectures") or []
        model_type = d.get("model_type", "clip_text_model")
        if len(archs) > 1 or (archs and archs[0] not in ARCHITECTURES):
            raise UnsupportedModelError(
                f"text encoder architecture {archs} is not supported; "
                f"supported: {sorted(ARCHITECTURES)}"
            )
        if not archs and model_type != "clip_text_model":
            raise UnsupportedModelError(
                f"text encoder model_type {model_type!r} is not supported; "
                "supported: 'clip_text_model'"
            )
        act = d.get("hidden_act", cls.hidden_act)
        if act not in ACTIVATIONS:
            raise UnsupportedModelError(
                f"text encoder hidden_act {act!r} is not supported; supported: {list(ACTIVATIONS)}"
            )
        config = cls(
            vocab_size=int(d.get("vocab_size", cls.vocab_size)),
            hidden_size=int(d.get("hidden_size", cls.hidden_size)),
            intermediate_size=int(d.get("intermediate_size", cls.intermediate_size)),
            num_hidden_layers=int(d.get("num_hidden_layers", cls.num_hidden_layers)),
            num_attention_heads=int(d.get("num_attention_heads", cls.num_attention_heads)),
            max_position_embeddings=int(
                d.get("max_position_embeddings", cls.max_position_embeddings)
            ),
            hidden_act=act,
            layer_norm_eps=float(d.get("layer_norm_eps", cls.layer_norm_eps)),
            projection_dim=int(d.get("projection_dim", cls.projection_dim)),
            eos_token_id=int(d.get("eos_token_id", cls.eos_token_id)),
            with_projection=ARCHITECTURES[archs[0]] if archs else False,
        )
        if config.hidden_size % config.num_attention_heads:
            raise ModelError(
                f"text encoder hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}"
            )
        return config


@dataclass
class CLIPOutput:
    last_hidden_state: mx.array  # (B, S, hidden), after the final layer norm
    pooler_output: mx.array  # (B, hidden), last_hidden_state at the end-of-text token
    text_embeds: mx.array | None = None  # (B, projection_dim) when the model has a projection
    # Embedding output then each layer's output (before the final layer norm), like transformers.
    hidden_states: tuple[mx.array, ...] | None = None


def quick_gelu(x: mx.array) -> mx.array:
    return x * mx.sigmoid(1.702 * x)


class CLIPAttention(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = (dim // self.num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        b, s, d = x.shape

        def heads(t: mx.array) -> mx.array:
            return t.reshape(b, s, self.num_heads, -1).transpose(0, 2, 1, 3)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        # The fused kernel does its softmax in float32 whatever the input dtype.
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask="causal")
        return self.out_proj(o.transpose(0, 2, 1, 3).reshape(b, s, d))


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        # transformers' "gelu" is the exact erf form, which is what nn.gelu computes.
        self.act = quick_gelu if config.hidden_act == "quick_gelu" else nn.gelu

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def __call__(self, input_ids: mx.array) -> mx.array:
        positions = self.position_embedding.weight[: input_ids.shape[1]]
        return self.token_embedding(input_ids) + positions


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layers = [CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)]


class CLIPTextTransformer(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class CLIPTextModel(nn.Module):
    """``CLIPTextModel`` or, with ``config.with_projection``, ``CLIPTextModelWithProjection``."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config)
        if config.with_projection:
            self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def __call__(self, input_ids: mx.array, *, output_hidden_states: bool = False) -> CLIPOutput:
        """Encode token ids ``(B, S)`` (S ≤ max_position_embeddings) with a causal mask."""
        if input_ids.ndim != 2 or input_ids.shape[1] > self.config.max_position_embeddings:
            raise UsageError(
                f"input_ids must be (batch, length ≤ {self.config.max_position_embeddings}), "
                f"got shape {tuple(input_ids.shape)}"
            )
        tm = self.text_model
        x = tm.embeddings(input_ids)
        hidden: list[mx.array] = [x]
        for layer in tm.encoder.layers:
            x = layer(x)
            hidden.append(x)
        last = tm.final_layer_norm(x)
        pooled = last[mx.arange(last.shape[0]), self._eos_positions(input_ids)]
        return CLIPOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            text_embeds=self.text_projection(pooled) if self.config.with_projection else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
        )

    def _eos_positions(self, input_ids: mx.array) -> mx.array:
        # Both transformers branches take the FIRST matching position (torch.argmax returns the
        # first maximum); computed explicitly so ties never depend on argmax's tie-breaking.
        if self.config.eos_token_id == 2:
            # Legacy configs: the end-of-text token is the largest id in the vocabulary.
            hit = input_ids == mx.max(input_ids, axis=-1, keepdims=True)
        else:
            hit = input_ids == self.config.eos_token_id
        s = input_ids.shape[1]
        first = mx.min(mx.where(hit, mx.arange(s), s), axis=-1)
        return mx.where(first == s, 0, first)  # no EOS at all: argmax of all-zeros is 0


def _check_clip_skip(clip_skip: int, usable_layers: int) -> None:
    if not 0 <= clip_skip <= usable_layers:
        raise UsageError(f"clip_skip must be between 0 and {usable_layers}, got {clip_skip}")


def encode_prompt_embeddings(
    model: CLIPTextModel, input_ids: mx.array, clip_skip: int | None = None
) -> mx.array:
    """Prompt embeddings as diffusers' ``StableDiffusionPipeline.encode_prompt`` builds them.

    Without ``clip_skip``: the last hidden state. With it: ``hidden_states[-(clip_skip + 1)]``
    passed through the final layer norm (``clip_skip=1`` is the penultimate layer). Note that
    diffusers applies ``clip_skip`` to the prompt only, never to the negative prompt.
    """
    if clip_skip is None:
        return model(input_ids).last_hidden_state
    _check_clip_skip(clip_skip, model.config.num_hidden_layers)
    out = model(input_ids, output_hidden_states=True)
    return model.text_model.final_layer_norm(out.hidden_states[-(clip_skip + 1)])


def encode_sdxl_prompt_embeddings(
    model: CLIPTextModel, input_ids: mx.array, clip_skip: int | None = None
) -> tuple[mx.array, mx.array | None]:
    """One SDXL encoder's part of ``StableDiffusionXLPipeline.encode_prompt``.

    Returns ``hidden_states[-(clip_skip + 2)]`` (the penultimate layer when ``clip_skip`` is
    None, with no final layer norm) and the projected pooled embedding (``text_embeds``) when
    the model has a projection, else None.
    """
    skip = 0 if clip_skip is None else clip_skip
    _check_clip_skip(skip, model.config.num_hidden_layers - 1)
    out = model(input_ids, output_hidden_states=True)
    return out.hidden_states[-(skip + 2)], out.text_embeds
