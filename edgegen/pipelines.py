"""The pipeline of each model family, from one table, and the callers' way to open one.

``StableDiffusion`` runs SD 1.x and 2.x, ``StableDiffusionXL`` adds SDXL's second text encoder
and size conditioning; img2img, inpainting and other backends are further entries here. Every
caller (``generate``, the render image source, the converter's quality check) opens a model
through :func:`load_pipeline` or :func:`pipeline_for` and drives the same yielding
``denoise`` loop and ``decode``.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from edgegen.device import compute_dtype
from edgegen.params import GenerationParams
from edgegen.pipeline import StableDiffusion
from edgegen.sdxl import StableDiffusionXL
from edgegen.sources import ModelSource, open_model

PIPELINES: dict[str, type[StableDiffusion]] = {
    "sd1": StableDiffusion,
    "sd2": StableDiffusion,
    "sdxl": StableDiffusionXL,
}


def pipeline_for(source: ModelSource, dtype: mx.Dtype) -> StableDiffusion:
    """The pipeline for an opened model, computing in ``dtype``."""
    return PIPELINES[source.family](source, dtype)


def load_pipeline(model: str | Path | None, dtype: mx.Dtype | None = None) -> StableDiffusion:
    """Open a store name, a model folder or a cached repo id (None: the built-in model);
    weights load on first use. ``dtype`` is what the model computes in; by default
    :func:`~edgegen.pipeline.compute_dtype` picks it."""
    source = open_model(model)
    if dtype is None:
        dtype = compute_dtype(source.dtype)
    return pipeline_for(source, dtype)


class StableDiffusionImageSource:
    """Adapts :class:`StableDiffusion` to the video renderer's ``ImageSource`` protocol.

    One instance keeps the model warm across all scenes of a video.
    """

    def __init__(
        self,
        sd: StableDiffusion,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
    ) -> None:
        """``steps``/``guidance`` default as :meth:`StableDiffusion.settings` says."""
        self.sd = sd
        self.steps, self.guidance = sd.settings(steps, guidance)
        self.sampler = sampler
        # Keys the image cache.
        self.name = f"{sd.name}:{self.steps}:{self.guidance:g}:{sd.sampler_name(sampler)}"
        self.native_size = sd.default_size

    @classmethod
    def load(cls, model: str | Path | None, **settings) -> StableDiffusionImageSource:
        return cls(load_pipeline(model), **settings)

    def generate(self, prompt: str, negative: str, seed: int, width: int, height: int):
        from PIL import Image

        p = GenerationParams(
            prompt, negative, self.steps, self.guidance, self.sampler, seed, width, height
        )
        return Image.fromarray(self.sd.generate(p)[0])
