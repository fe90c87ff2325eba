"""Where a diffusion model comes from: a store name, a model folder, or a cached repo id.

:func:`open_model` returns a :class:`ModelSource`; the pipeline only talks to that protocol, so a
diffusers folder (mapped at load time) and a converted store artifact (already in MLX layout)
are interchangeable.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import mlx.core as mx

from edgegen.converters.diffusers import open_diffusers, resolve


class ModelSource(Protocol):
    name: str
    family: str  # "sd1" | "sd2" | "sdxl"

    def config(self, component: str) -> dict[str, Any]: ...
    def load_tokenizer(self, which: str = "tokenizer") -> Any: ...
    def load_text_encoder(self, dtype: mx.Dtype, which: str = "text_encoder") -> Any: ...
    def load_unet(self, dtype: mx.Dtype) -> Any: ...
    def load_vae(self, dtype: mx.Dtype) -> Any: ...


def open_model(model: str | Path | None = None) -> ModelSource:
    """Resolve ``model`` (a store name, a path or a Hugging Face repo id found in the local
    cache; a path to a converted artifact works too); None or
    ``"default"`` is the small model that ships inside the package (edgegen.defaultmodel)."""
    from edgegen import defaultmodel

    if model is None or str(model) in defaultmodel.ALIASES:
        # Reported under its own name rather than its folder's ("weights").
        return replace(open_diffusers(defaultmodel.path()), name=defaultmodel.DEFAULT_MODEL_NAME)
    # A converted artifact: a folder with an edgegen manifest, or a store name.
    from edgegen import store
    from edgegen.artifact import StoreModel
    from edgegen.converters.manifest import is_artifact

    path = Path(model).expanduser()
    if path.is_dir() and is_artifact(path):
        return StoreModel(path)
    if not path.exists() and store.exists(str(model)):
        return StoreModel(store.find(str(model)))
    return open_diffusers(resolve(model))
