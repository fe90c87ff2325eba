"""A model to convert: its configs, tokenizers and weights under diffusers' names.

Diffusers folders (:func:`open_diffusers_source`) and single-file checkpoints
(``checkpoint.open_checkpoint``) both open as a :class:`SourceModel`; the converter
(``edgegen/convert.py``) reads one component at a time from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx

from edgegen.converters.components import MODEL_COMPONENTS, build_module, rules
from edgegen.converters.diffusers import open_diffusers, read_json
from edgegen.converters.mapping import Rule, load_into, map_weights, parameter_shapes
from edgegen.converters.safetensors_io import find_weights, read_component
from edgegen.converters.tokenizer import CLIPTokenizer
from edgegen.fileio import sha256_file


@dataclass
class SourceModel:
    """A model to convert, with its weights under diffusers' names, read lazily per component.

    Also a :class:`~edgegen.sources.ModelSource` (weights mapped at load, like a diffusers
    folder), which is what the quality check renders its float32 reference with.
    """

    name: str
    family: str  # "sd1" | "sd2" | "sdxl"
    kind: str  # "diffusers" | "checkpoint"
    root: Path
    configs: dict[str, dict[str, Any]]  # component (and "model_index", "scheduler") → config
    tokenizers: dict[str, Path]  # "tokenizer"/"tokenizer_2" → folder to copy
    files: dict[str, Path]  # relative name → file that decides the conversion (hashed)
    read: Callable[[str], dict[str, mx.array]]  # component → its weights, diffusers names
    turbo: bool = False  # a Turbo (adversarially distilled) model: 1-4 steps, no guidance
    keep: Any = None  # whatever must outlive the source (e.g. a temporary tokenizer folder)
    hint: str = ""  # why weights may not map (a checkpoint read with a preset configuration)

    @property
    def components(self) -> list[str]:
        return [c for c in MODEL_COMPONENTS if c in self.configs]

    def config(self, component: str) -> dict[str, Any]:
        return self.configs[component]

    def weights(self, component: str) -> dict[str, mx.array]:
        return self.read(component)

    def rules(self, component: str) -> list[Rule]:
        return rules(component)

    def hashes(self) -> dict[str, str]:
        return {rel: sha256_file(path) for rel, path in sorted(self.files.items())}

    @property
    def defaults(self) -> dict[str, Any]:
        # SD-Turbo / SDXL-Turbo model cards: one to four steps, guidance_scale 0.
        return {"steps": 1, "guidance": 0.0} if self.turbo else {}

    # ModelSource
    def load_tokenizer(self, which: str = "tokenizer") -> CLIPTokenizer:
        return CLIPTokenizer.from_dir(self.tokenizers[which])

    def load_text_encoder(self, dtype: mx.Dtype, which: str = "text_encoder"):
        return self._load(which, dtype)

    def load_unet(self, dtype: mx.Dtype):
        return self._load("unet", dtype)

    def load_vae(self, dtype: mx.Dtype):
        return self._load("vae", dtype)

    def _load(self, component: str, dtype: mx.Dtype):
        model = build_module(component, self.config(component))
        w = map_weights(
            self.weights(component), self.rules(component), parameter_shapes(model), component
        )
        load_into(model, {k: v.astype(dtype) for k, v in w.items()})
        return model


def open_diffusers_source(path: Path) -> SourceModel:
    """A diffusers folder as a conversion source."""
    model = open_diffusers(path)
    configs: dict[str, dict[str, Any]] = {"model_index": read_json(model.root / "model_index.json")}
    files = {"model_index.json": model.root / "model_index.json"}
    tokenizers = {}
    for comp, folder in model.components.items():
        if comp.startswith("tokenizer"):
            tokenizers[comp] = folder
            files.update({f"{comp}/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file()})
            continue
        configs[comp] = model.config(comp)
        cfg_name = "scheduler_config.json" if comp == "scheduler" else "config.json"
        files[f"{comp}/{cfg_name}"] = folder / cfg_name
        if comp != "scheduler":
            files.update({f"{comp}/{p.name}": p for p in find_weights(folder)})
    return SourceModel(
        name=model.name,
        family=model.family,
        kind="diffusers",
        root=model.root,
        configs=configs,
        tokenizers=tokenizers,
        files=files,
        read=lambda comp: read_component(model.components[comp]),
        turbo="turbo" in model.name.lower(),
    )
