"""Stable Diffusion XL (and SDXL-Turbo) on MLX: the conditioning SDXL adds to the SD pipeline.

SDXL differs from SD 1.x/2.x only in what the UNet is conditioned on, so
:class:`StableDiffusionXL` reuses :class:`~edgegen.pipeline.StableDiffusion`'s loop, sampler and
decoding and overrides :meth:`conditioning`, step for step as diffusers'
``StableDiffusionXLPipeline.encode_prompt`` and ``_get_add_time_ids`` build it:

1. Both text encoders read the prompt: CLIP ViT-L (``text_encoder``) and OpenCLIP bigG with a
   projection (``text_encoder_2``). Each contributes its penultimate hidden state (no final
   layer norm); the two are concatenated along the feature axis (768 + 1280 = 2048).
2. The pooled, projected embedding of the second encoder (1280) conditions the UNet's
   ``add_embedding`` together with six "time ids": original size (h, w), crop top-left
   (0, 0) and target size (h, w).
3. An empty negative prompt gives all-zero negative embeddings when the model's
   ``model_index.json`` says ``force_zeros_for_empty_prompt`` (SDXL base does).

The default size is 9:16 portrait at 1024² pixels: 768×1344. The VAE decodes in float32 when
its config asks for it (``force_upcast``: SDXL's VAE overflows in float16 into black images).
Turbo models need no extra code: their scheduler config spaces timesteps "trailing", and the
converter records their defaults (1-4 steps, guidance off) in the manifest.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from edgegen.params import GenerationParams
from edgegen.pipeline import StableDiffusion, prompt_rows, warn_truncated
from edgegen.sources import ModelSource


def model_index(source: ModelSource) -> dict[str, Any]:
    """The model's ``model_index.json`` (empty for a checkpoint read with a preset config)."""
    return source.configs.get("model_index", {})


class StableDiffusionXL(StableDiffusion):
    def __init__(self, source: ModelSource, dtype: mx.Dtype = mx.float32) -> None:
        super().__init__(source, dtype)
        self._tokenizer_2 = None
        self._text_encoder_2 = None
        self.force_zeros_for_empty_prompt = bool(
            model_index(source).get("force_zeros_for_empty_prompt", True)
        )

    @property
    def tokenizer_2(self):
        if self._tokenizer_2 is None:
            self._tokenizer_2 = self.source.load_tokenizer("tokenizer_2")
        return self._tokenizer_2

    @property
    def text_encoder_2(self):
        if self._text_encoder_2 is None:
            self._text_encoder_2 = self.source.load_text_encoder(self.dtype, "text_encoder_2")
        return self._text_encoder_2

    def _ids(self, tokenizer: Any, prompts: list[str]) -> mx.array:
        batch = tokenizer.encode(prompts)
        warn_truncated(prompts, batch.truncated, tokenizer.model_max_length, stacklevel=3)
        return mx.array(batch.ids)

    def encode_prompts(
        self, prompts: list[str], clip_skip: int | None = None
    ) -> tuple[mx.array, mx.array]:
        """``(context (B, 77, 2048), pooled (B, 1280))`` for ``prompts`` (steps 1-2 above)."""
        from edgegen.models.clip import encode_sdxl_prompt_embeddings

        hidden, pooled = [], None
        for tokenizer, encoder in (
            (self.tokenizer, self.text_encoder),
            (self.tokenizer_2, self.text_encoder_2),
        ):
            h, p = encode_sdxl_prompt_embeddings(encoder, self._ids(tokenizer, prompts), clip_skip)
            hidden.append(h)
            if p is not None and pooled is None:
                pooled = p
        if pooled is None:
            from edgegen.errors import ModelError

            raise ModelError(f"model {self.name!r}: no SDXL text encoder has a projection")
        return mx.concatenate(hidden, axis=-1).astype(self.dtype), pooled.astype(self.dtype)

    @staticmethod
    def time_ids(width: int, height: int, count: int) -> mx.array:
        """SDXL's size conditioning: original (h, w), crop top-left (0, 0), target (h, w)."""
        ids = mx.array([[height, width, 0, 0, height, width]], dtype=mx.float32)
        return mx.repeat(ids, count, axis=0)

    def conditioning(
        self,
        p: GenerationParams,
        count: int,
        cfg: bool,
        prompts: list[tuple[str, str]] | None = None,
    ) -> tuple[mx.array, dict[str, mx.array]]:
        positive, negative = prompt_rows(p, count, prompts)
        context, pooled = self.encode_prompts(positive, p.clip_skip)
        ids = self.time_ids(p.width, p.height, count)
        if cfg:
            empty = [not n for n in negative]
            if all(empty) and self.force_zeros_for_empty_prompt:
                neg_context, neg_pooled = mx.zeros_like(context), mx.zeros_like(pooled)
            else:
                neg_context, neg_pooled = self.encode_prompts(negative, p.clip_skip)
                if any(empty) and self.force_zeros_for_empty_prompt:  # zeros for those rows
                    keep = mx.array([0.0 if e else 1.0 for e in empty])
                    neg_context = neg_context * keep[:, None, None]
                    neg_pooled = neg_pooled * keep[:, None]
            context = mx.concatenate([neg_context, context])
            pooled = mx.concatenate([neg_pooled, pooled])
            ids = mx.concatenate([ids, ids])
        return context, {"text_embeds": pooled, "time_ids": ids.astype(self.dtype)}
