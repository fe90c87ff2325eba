"""Where a diffusion model comes from: a store name, a model folder, or a cached repo id.

:func:`open_model` returns a :class:`~edgegen.converters.source.ModelSource`, the one type the
pipelines talk to, so a diffusers folder (mapped at load time), a converted store artifact
(already in MLX layout) and the built-in model are interchangeable.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgegen import defaultmodel, store
from edgegen.converters.diffusers import open_diffusers, resolve
from edgegen.converters.manifest import is_artifact
from edgegen.converters.source import ModelSource, open_artifact

__all__ = ["ModelSource", "open_model"]


def open_model(model: str | Path | None = None) -> ModelSource:
    """Resolve ``model`` (a store name, a path or a Hugging Face repo id found in the local
    cache; a path to a converted artifact works too); None or
    ``"default"`` is the small model that ships inside the package (edgegen.defaultmodel)."""
    if model is None or str(model) in defaultmodel.ALIASES:
        # Reported under its own name rather than its folder's ("weights").
        return replace(open_diffusers(defaultmodel.path()), name=defaultmodel.DEFAULT_MODEL_NAME)
    path = Path(model).expanduser()
    if path.is_dir() and is_artifact(path):
        return open_artifact(path)
    if not path.exists() and store.exists(str(model)):
        return open_artifact(store.find(str(model)))
    return open_diffusers(resolve(model))
