"""Converted diffusion models in the store, loaded as a :class:`~edgegen.sources.ModelSource`.

An artifact written by ``edgegen convert`` (see ``edgegen/convert.py``) is::

    <name>/manifest.json            format, family, per-component config, dtype, quantization
    <name>/unet.safetensors         flat MLX parameter names, MLX layout (no mapping at load)
    <name>/vae.safetensors
    <name>/text_encoder.safetensors (+ text_encoder_2.safetensors for SDXL)
    <name>/tokenizer/ (+ tokenizer_2/)

Loading builds each module from the config recorded in the manifest, gives it the recorded
quantization structure, and loads the tensors straight in: ``mx.load`` reads safetensors
lazily, so a weight is read from disk when it is first used. The manifest itself (schema,
validation, older versions) is ``edgegen.converters.manifest``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.converters.components import build_module
from edgegen.converters.manifest import Manifest
from edgegen.converters.quantize import QuantPlan
from edgegen.device import vae_dtype
from edgegen.errors import ModelError, UnsupportedModelError

__all__ = ["DTYPES", "StoreModel", "load_module"]

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


class StoreModel:
    """A converted model in the store (or any folder holding an edgegen diffusion manifest)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        manifest = Manifest.read(self.root)
        if manifest.kind != "diffusion":
            raise UnsupportedModelError(
                f"{str(self.root)!r} holds a {manifest.kind!r} model, not a diffusion model"
            )
        self.manifest = manifest
        self.name: str = manifest.name
        self.family: str = manifest.family

    @property
    def defaults(self) -> dict[str, Any]:
        """Generation defaults the converter recorded (e.g. Turbo: steps, guidance off)."""
        return dict(self.manifest.defaults or {})

    @property
    def dtype(self) -> mx.Dtype:
        """The UNet's stored precision (what a GPU should compute in)."""
        return DTYPES[self.manifest.component("unet").dtype]

    def config(self, component: str) -> dict[str, Any]:
        try:
            return self.manifest.config[component]
        except KeyError:
            raise ModelError(f"model {self.name!r} has no {component} config") from None

    def load_tokenizer(self, which: str = "tokenizer"):
        from edgegen.converters.tokenizer import CLIPTokenizer

        folder = self.root / which
        if not folder.is_dir():
            raise ModelError(f"model {self.name!r} lacks its {which}/ folder")
        return CLIPTokenizer.from_dir(folder)

    def load_text_encoder(self, dtype: mx.Dtype, which: str = "text_encoder"):
        return self.load_component(which, dtype)

    def load_unet(self, dtype: mx.Dtype):
        return self.load_component("unet", dtype)

    def load_vae(self, dtype: mx.Dtype):
        stored = self.manifest.component("vae").dtype
        return self.load_component("vae", vae_dtype(dtype, self.family, self.config("vae"), stored))

    def load_component(self, component: str, dtype: mx.Dtype, runtime: str | None = None):
        """Build ``component`` from its recorded config and load its weights as they are.

        ``dtype`` is the compute dtype: float weights (and quantization scales) are cast to it
        lazily. ``runtime`` picks how quantized layers run (``converters.quantize``).
        """
        entry = self.manifest.component(component)
        return load_module(
            component,
            self.config(component),
            self.root / entry.file,
            entry.quantization,
            dtype,
            runtime,
        )


def load_module(
    component: str,
    config: dict[str, Any],
    path: Path,
    qplan: QuantPlan | None,
    dtype: mx.Dtype,
    runtime: str | None = None,
) -> nn.Module:
    """One component from its config and its MLX-layout weight file (no mapping at load)."""
    from edgegen.converters.mapping import parameter_shapes
    from edgegen.converters.quantize import apply_plan, dequantize_weights, runtime_mode
    from edgegen.converters.safetensors_io import read_file

    model = build_module(component, config)
    weights = read_file(path)
    if qplan is not None and qplan.layers:
        runtime = runtime or runtime_mode()
        if runtime == "at-load":
            weights = dequantize_weights(weights, qplan, parameter_shapes(model), dtype)
        else:
            apply_plan(model, qplan, runtime)
    weights = {
        k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
    }
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"{str(path)!r} does not match its manifest: {first}") from e
    model.eval()
    return model
