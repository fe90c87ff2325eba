"""A diffusion model edgegen can read, whatever its files: the one :class:`ModelSource` type.

Four kinds of files open as a ``ModelSource``, by three functions:

- a diffusers folder or Hugging Face cache snapshot (``diffusers.open_diffusers``),
- a single-file checkpoint (``checkpoint.open_checkpoint``),
- a converted store artifact (:func:`open_artifact`).

A source holds the model's configs and tokenizers and reads one component's weights at a time,
either under diffusers' names (mapped onto the module through the component table's rules when
loaded) or already in MLX layout with a recorded quantization (an artifact). The pipelines load
components through it and the converter reads weights from it, so neither knows which kind of
files it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.converters.components import MODEL_COMPONENTS, build_module, rules
from edgegen.converters.manifest import Manifest
from edgegen.converters.mapping import load_into, map_weights, parameter_shapes
from edgegen.converters.quantize import QuantPlan, apply_plan, dequantize_weights, runtime_mode
from edgegen.converters.safetensors_io import read_component, read_file
from edgegen.converters.tokenizer import CLIPTokenizer
from edgegen.device import vae_dtype
from edgegen.errors import ModelError, UnsupportedModelError, WeightMappingError
from edgegen.fileio import read_json, sha256_file

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
# SD-Turbo / SDXL-Turbo model cards: one to four steps, guidance_scale 0.
TURBO_DEFAULTS = {"steps": 1, "guidance": 0.0}


def defaults_by_name(name: str) -> dict[str, Any]:
    """Generation defaults of a model known only by its name: a Turbo model's, else none."""
    return dict(TURBO_DEFAULTS) if "turbo" in name.lower() else {}


@dataclass
class ModelSource:
    """A diffusion model's configs, tokenizers and weights, read lazily per component."""

    name: str
    family: str  # "sd1" | "sd2" | "sdxl"
    kind: str  # "diffusers" | "checkpoint" | "artifact"
    root: Path
    configs: dict[str, dict[str, Any]]  # component (and "model_index", "scheduler") → config
    tokenizers: dict[str, Path]  # "tokenizer"/"tokenizer_2" → its folder
    files: dict[str, Path]  # relative name → file that decides a conversion (hashed)
    read: Callable[[str], dict[str, mx.array]]  # component → its weights
    manifest: Manifest | None = None  # an artifact's: weights are in MLX layout, as recorded
    defaults: dict[str, Any] = field(default_factory=dict)  # generation defaults (Turbo)
    keep: Any = None  # whatever must outlive the source (e.g. a temporary tokenizer folder)
    hint: str = ""  # why weights may not map (a checkpoint read with a preset configuration)

    @property
    def components(self) -> list[str]:
        return [c for c in MODEL_COMPONENTS if c in self.configs]

    @property
    def turbo(self) -> bool:
        return self.defaults == TURBO_DEFAULTS

    @property
    def dtype(self) -> mx.Dtype | None:
        """The UNet's stored precision (what a GPU should compute in); None if not recorded."""
        if self.manifest is None:
            return None
        return DTYPES[self.manifest.component("unet").dtype]

    def config(self, component: str) -> dict[str, Any]:
        try:
            return self.configs[component]
        except KeyError:
            raise ModelError(f"model {self.name!r} has no {component} config") from None

    def hashes(self) -> dict[str, str]:
        return {rel: sha256_file(path) for rel, path in sorted(self.files.items())}

    def mapped_weights(self, component: str, model: nn.Module) -> dict[str, mx.array]:
        """``component``'s weights under ``model``'s parameter names (diffusers-named sources
        only; an artifact's weights already are)."""
        try:
            return map_weights(
                self.read(component), rules(component), parameter_shapes(model), component
            )
        except WeightMappingError as e:
            if not self.hint:
                raise
            raise WeightMappingError(
                f"{e}; {self.hint}",
                option="config_from",
                advice="pass {} with a diffusers folder of its architecture",
            ) from e

    # Loading, for the pipelines.
    def load(self, component: str, dtype: mx.Dtype, runtime: str | None = None) -> nn.Module:
        """``component``'s module with its weights, computing in ``dtype``.

        Float weights (and quantization scales) are cast to ``dtype`` lazily. ``runtime`` picks
        how an artifact's quantized layers run (``converters.quantize.runtime_mode``).
        """
        model = build_module(component, self.config(component))
        if self.manifest is None:
            weights = self.mapped_weights(component, model)
            load_into(model, {k: v.astype(dtype) for k, v in weights.items()})
            mx.eval(model.parameters())  # a bad file fails here, not mid-generation
        else:
            entry = self.manifest.component(component)
            load_weights_file(model, self.root / entry.file, entry.quantization, dtype, runtime)
        model.eval()
        return model

    def load_tokenizer(self, which: str = "tokenizer") -> CLIPTokenizer:
        folder = self.tokenizers.get(which)
        if folder is None or not folder.is_dir():
            raise ModelError(f"model {self.name!r} lacks its {which}/ folder")
        return CLIPTokenizer.from_dir(folder)

    def load_text_encoder(self, dtype: mx.Dtype, which: str = "text_encoder") -> nn.Module:
        return self.load(which, dtype)

    def load_unet(self, dtype: mx.Dtype) -> nn.Module:
        return self.load("unet", dtype)

    def load_vae(self, dtype: mx.Dtype) -> nn.Module:
        """The VAE, in float32 where ``dtype`` would break it (``edgegen.device.vae_dtype``)."""
        stored = self.manifest.component("vae").dtype if self.manifest is not None else None
        return self.load("vae", vae_dtype(dtype, self.family, self.config("vae"), stored))


def load_weights_file(
    model: nn.Module, path: Path, qplan: QuantPlan | None, dtype: mx.Dtype, runtime: str | None
) -> None:
    """Load an MLX-layout weight file, as quantized by ``qplan``, into ``model`` (strictly)."""
    weights = read_file(path)  # lazy: a tensor is read from disk when first used
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


def open_artifact(root: Path) -> ModelSource:
    """A converted diffusion model (a store folder, or any folder with its manifest).

    ``<root>/manifest.json`` records the family, every component's config, file, dtype and
    quantization; ``<component>.safetensors`` hold MLX-layout weights (no mapping at load);
    ``tokenizer/`` (and ``tokenizer_2/``) are copies of the source's.
    """
    root = Path(root)
    manifest = Manifest.read(root)
    if manifest.kind != "diffusion":
        raise UnsupportedModelError(
            f"{str(root)!r} holds a {manifest.kind!r} model, not a diffusion model"
        )
    files = {c: root / e.file for c, e in manifest.mlx.components.items()}
    return ModelSource(
        name=manifest.name,
        family=manifest.family,
        kind="artifact",
        root=root,
        configs=dict(manifest.config),
        tokenizers={t: root / t for t in ("tokenizer", "tokenizer_2") if (root / t).is_dir()},
        files={p.name: p for p in files.values()},
        read=lambda component: read_file(files[component]),
        manifest=manifest,
        defaults=dict(manifest.defaults or {}),
    )


def load_component(component: str, directory: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """One component from its own diffusers/transformers folder (``config.json`` + weights),
    outside any model: what tests and benchmarks load a lone UNet, VAE or text encoder with."""
    directory = Path(directory)
    source = ModelSource(
        name=directory.name,
        family="",
        kind="diffusers",
        root=directory,
        configs={component: read_json(directory / "config.json")},
        tokenizers={},
        files={},
        read=lambda _: read_component(directory),
    )
    return source.load(component, dtype)
