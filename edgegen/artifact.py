"""Converted diffusion models in the store, loaded as a :class:`~edgegen.sources.ModelSource`.

An artifact written by ``edgegen convert`` (see ``edgegen/converters/convert_sd.py``) is::

    <name>/manifest.json            format, family, per-component config, dtype, quantization
    <name>/unet.safetensors         flat MLX parameter names, MLX layout (no mapping at load)
    <name>/vae.safetensors
    <name>/text_encoder.safetensors (+ text_encoder_2.safetensors for SDXL)
    <name>/tokenizer/ (+ tokenizer_2/)

Loading builds each module from the config recorded in the manifest, gives it the recorded
quantization structure, and loads the tensors straight in: ``mx.load`` reads safetensors
lazily, so a weight is read from disk when it is first used. The manifest schema, field by
field, is checked by :func:`check_manifest`; older format versions are upgraded in memory by
:func:`upgrade` (there is only version 1 so far) and newer ones refused by ``store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen import store
from edgegen.errors import ModelError, UnsupportedModelError

FAMILIES = ("sd1", "sd2", "sdxl")
MODEL_COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def dtype_name(dtype: mx.Dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype}")


def build_module(component: str, config: dict[str, Any]) -> nn.Module:
    """The MLX module for ``component`` described by its diffusers/transformers config.

    Parameters are created lazily by MLX and never evaluated before real weights replace them.
    """
    if component == "unet":
        from edgegen.models.unet import UNet2DConditionModel, UNetConfig

        return UNet2DConditionModel(UNetConfig.from_dict(config))
    if component == "vae":
        from edgegen.models.vae import AutoencoderKL, VAEConfig

        return AutoencoderKL(VAEConfig.from_dict(config))
    if component.startswith("text_encoder"):
        from edgegen.models.clip import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig.from_dict(config))
    raise ValueError(f"unknown component {component!r}")


def upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """Bring a manifest of any older format version to the current in-memory shape.

    Version 1 is current. A future version 2 adds its step here (``if version == 1: ...``),
    so every artifact ever written keeps loading; tests/artifacts holds one of each.
    """
    return manifest


def check_manifest(manifest: dict[str, Any], where: str) -> None:
    """Fail with one line if a diffusion manifest lacks what loading needs."""

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ModelError(f"{where}: manifest {what}")

    need(manifest.get("kind") == "diffusion", f"kind is {manifest.get('kind')!r}, not 'diffusion'")
    need(manifest.get("family") in FAMILIES, f"family {manifest.get('family')!r} is unknown")
    config = manifest.get("config")
    need(isinstance(config, dict), "has no config")
    comps = manifest.get("targets", {}).get("mlx", {}).get("components")
    need(isinstance(comps, dict), "has no MLX target components")
    wanted = ["text_encoder", "unet", "vae"]
    if manifest["family"] == "sdxl":
        wanted.append("text_encoder_2")
    for comp in wanted:
        need(comp in comps, f"lacks component {comp!r}")
        need(isinstance(config.get(comp), dict), f"lacks the config of {comp!r}")
        entry = comps[comp]
        need(isinstance(entry, dict) and "file" in entry, f"entry for {comp!r} has no file")
        need(entry.get("dtype") in DTYPES, f"{comp!r} has unknown dtype {entry.get('dtype')!r}")
    need(isinstance(config.get("scheduler"), dict), "lacks the scheduler config")


class StoreModel:
    """A converted model in the store (or any folder holding an edgegen diffusion manifest)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        manifest = upgrade(store.read_manifest(self.root))
        if manifest.get("kind") != "diffusion":
            raise UnsupportedModelError(
                f"{str(self.root)!r} holds a {manifest.get('kind')!r} model, not a diffusion model"
            )
        check_manifest(manifest, str(self.root))
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.family: str = manifest["family"]

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return self.manifest["targets"]["mlx"]["components"]

    @property
    def defaults(self) -> dict[str, Any]:
        """Generation defaults the converter recorded (e.g. Turbo: steps, guidance off)."""
        return dict(self.manifest.get("defaults") or {})

    @property
    def dtype(self) -> mx.Dtype:
        """The UNet's stored precision (what a GPU should compute in)."""
        return DTYPES[self.components["unet"]["dtype"]]

    def config(self, component: str) -> dict[str, Any]:
        try:
            return self.manifest["config"][component]
        except KeyError:
            raise ModelError(f"model {self.name!r} has no {component} config") from None

    def load_tokenizer(self, which: str = "tokenizer"):  # noqa: ANN201
        from edgegen.tokenizer import CLIPTokenizer

        folder = self.root / which
        if not folder.is_dir():
            raise ModelError(f"model {self.name!r} lacks its {which}/ folder")
        return CLIPTokenizer.from_dir(folder)

    def load_text_encoder(self, dtype: mx.Dtype, which: str = "text_encoder"):  # noqa: ANN201
        return self.load_component(which, dtype)

    def load_unet(self, dtype: mx.Dtype):  # noqa: ANN201
        return self.load_component("unet", dtype)

    def load_vae(self, dtype: mx.Dtype):  # noqa: ANN201
        # A VAE stored in float32 was kept there on purpose (fp16 overflows it): stay there.
        if self.components["vae"]["dtype"] == "float32":
            dtype = mx.float32
        return self.load_component("vae", dtype)

    def load_component(self, component: str, dtype: mx.Dtype, runtime: str | None = None):  # noqa: ANN201
        """Build ``component`` from its recorded config and load its weights as they are.

        ``dtype`` is the compute dtype: float weights (and quantization scales) are cast to it
        lazily. ``runtime`` picks how quantized layers run (``converters.quantize``).
        """
        if component not in self.components:
            raise ModelError(f"model {self.name!r} has no {component} component")
        entry = self.components[component]
        return load_module(
            component,
            self.config(component),
            self.root / entry["file"],
            entry.get("quantization"),
            dtype,
            runtime,
        )


def load_module(
    component: str,
    config: dict[str, Any],
    path: Path,
    quantization: dict[str, Any] | None,
    dtype: mx.Dtype,
    runtime: str | None = None,
) -> nn.Module:
    """One component from its config and its MLX-layout weight file (no mapping at load)."""
    from edgegen.converters.mapping import parameter_shapes
    from edgegen.converters.quantize import (
        QuantPlan,
        apply_plan,
        dequantize_weights,
        runtime_mode,
    )
    from edgegen.converters.safetensors_io import read_file

    model = build_module(component, config)
    weights = read_file(path)
    qplan = (
        QuantPlan.from_manifest(quantization)
        if quantization and quantization.get("layers")
        else None
    )
    if qplan is not None:
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


def is_artifact(path: Path) -> bool:
    return (Path(path) / store.MANIFEST).is_file()
