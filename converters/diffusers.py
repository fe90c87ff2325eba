"""Find and describe Stable Diffusion models in diffusers layout, offline.

A model is named by a path to a diffusers folder (``model_index.json`` + component folders),
or by a Hugging Face repo id found in the local cache
(``$HF_HUB_CACHE/models--org--name/snapshots/<rev>/``). Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.converters.components import build_module, rules
from edgegen.converters.mapping import load_mapped
from edgegen.converters.tokenizer import CLIPTokenizer
from edgegen.errors import ModelError, ModelNotFoundError, UnsupportedModelError

# diffusers pipeline class → edgegen family (refined by the UNet config below).
SUPPORTED_PIPELINES = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionInpaintPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}
# Architectures people will try, named so the error says what they are.
KNOWN_UNSUPPORTED = {
    "FluxPipeline": "FLUX (a DiT transformer)",
    "StableDiffusion3Pipeline": "Stable Diffusion 3 (MMDiT)",
    "PixArtAlphaPipeline": "PixArt-α (DiT)",
    "PixArtSigmaPipeline": "PixArt-Σ (DiT)",
    "KandinskyV22Pipeline": "Kandinsky 2.2",
    "StableCascadePriorPipeline": "Stable Cascade",
    "LatentConsistencyModelPipeline": "LCM pipeline layout",
}
SD_COMPONENTS = ("text_encoder", "tokenizer", "unet", "vae", "scheduler")
SDXL_COMPONENTS = (*SD_COMPONENTS, "text_encoder_2", "tokenizer_2")


@dataclass(frozen=True)
class DiffusersModel:
    """A diffusers folder, read directly (weights mapped to MLX layout at load time).

    The converted store artifact offers the same methods, so the pipeline does not care which
    it was given.
    """

    root: Path
    pipeline_class: str
    family: str  # "sd1" | "sd2" | "sdxl"
    components: dict[str, Path]
    name: str

    def config(self, component: str) -> dict[str, Any]:
        """The component's ``config.json`` (``scheduler_config.json`` for the scheduler)."""
        folder = self.components[component]
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        return read_json(folder / name)

    def load_tokenizer(self, which: str = "tokenizer") -> CLIPTokenizer:
        return CLIPTokenizer.from_dir(self.components[which])

    def load_text_encoder(self, dtype, which: str = "text_encoder"):
        return load_text_encoder(self.components[which], dtype)

    def load_unet(self, dtype):
        return load_unet(self.components["unet"], dtype)

    def load_vae(self, dtype):
        return load_vae(self.components["vae"], dtype)


def load_component(component: str, directory: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """A component's module from its diffusers/transformers folder (config.json + safetensors)."""
    directory = Path(directory)
    model = build_module(component, read_json(directory / "config.json"))
    where = directory.name if component.startswith("text_encoder") else component
    return load_mapped(model, directory, rules(component), where, dtype)


def load_text_encoder(directory: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """A CLIP text encoder from a transformers folder."""
    return load_component("text_encoder", directory, dtype)


def load_unet(directory: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """The UNet of a diffusers ``unet/`` folder."""
    return load_component("unet", directory, dtype)


def load_vae(directory: Path, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """The AutoencoderKL of a diffusers ``vae/`` folder."""
    return load_component("vae", directory, dtype)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(f"{str(path)!r} is missing") from e
    except (OSError, ValueError) as e:
        raise ModelError(f"{str(path)!r} is not valid JSON") from e
    if not isinstance(data, dict):
        raise ModelError(f"{str(path)!r} is not a JSON object")
    return data


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def find_in_hf_cache(repo_id: str) -> Path | None:
    """The snapshot folder of ``org/name`` in the local Hugging Face cache, or None.

    The revision ``refs/main`` points at wins; otherwise the most recently written snapshot.
    """
    repo = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        rev = snapshots / ref.read_text().strip()
        if rev.is_dir():
            return rev
    revs = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return revs[-1] if revs else None


def resolve(model: str | Path) -> Path:
    """A local path for a model path or a cached Hugging Face repo id."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    text = str(model)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        found = find_in_hf_cache(text)
        if found is not None:
            return found
        raise ModelNotFoundError(
            f"model {text!r} is neither a folder nor in the Hugging Face cache at "
            f"{str(hf_cache_dir())!r} (edgegen never downloads; fetch it once with "
            "`hf download` or pass a folder)"
        )
    raise ModelNotFoundError(f"model path {text!r} does not exist")


def _family(pipeline_family: str, unet_config: dict[str, Any]) -> str:
    if pipeline_family == "sdxl":
        return "sdxl"
    # SD 1.x conditions on CLIP ViT-L (768 wide); SD 2.x on OpenCLIP ViT-H (1024 wide).
    return "sd2" if unet_config.get("cross_attention_dim") == 1024 else "sd1"


def _display_name(root: Path) -> str:
    # A cache snapshot is .../models--org--name/snapshots/<rev>: name it org/name.
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.parent.parent.name[len("models--") :].replace("--", "/")
    return root.name


def open_diffusers(path: Path) -> DiffusersModel:
    """Validate a diffusers folder and describe it; errors name what is wrong."""
    root = Path(path)
    if not root.is_dir():
        raise ModelError(f"{str(root)!r} is a file, not a diffusers model folder")
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise ModelError(
            f"{str(root)!r} is not a diffusers model: no model_index.json "
            "(expected text_encoder/, tokenizer/, unet/, vae/, scheduler/)"
        )
    index = read_json(index_path)
    cls = index.get("_class_name")
    if cls in KNOWN_UNSUPPORTED:
        raise UnsupportedModelError(
            f"{str(root)!r} is a {KNOWN_UNSUPPORTED[cls]} model ({cls}); edgegen supports "
            "Stable Diffusion 1.x, 2.x and SDXL"
        )
    if cls not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{str(root)!r} has pipeline class {cls!r}; supported: {', '.join(SUPPORTED_PIPELINES)}"
        )
    wanted = SDXL_COMPONENTS if SUPPORTED_PIPELINES[cls] == "sdxl" else SD_COMPONENTS
    components = {}
    for name in wanted:
        folder = root / name
        if not folder.is_dir():
            raise ModelError(f"{str(root)!r} lacks the {name}/ folder its model_index.json lists")
        components[name] = folder
    unet_config = read_json(components["unet"] / "config.json")
    family = _family(SUPPORTED_PIPELINES[cls], unet_config)
    return DiffusersModel(root, cls, family, components, _display_name(root))
