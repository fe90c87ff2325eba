"""Find and describe Stable Diffusion models in diffusers layout, offline.

A model is named by a path to a diffusers folder (``model_index.json`` + component folders),
or by a Hugging Face repo id found in the local cache
(``$HF_HUB_CACHE/models--org--name/snapshots/<rev>/``). Nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgegen.converters.components import FAMILIES, folders
from edgegen.converters.safetensors_io import find_weights, read_component
from edgegen.converters.source import ModelSource, defaults_by_name
from edgegen.errors import ModelError, ModelNotFoundError, UnsupportedModelError
from edgegen.fileio import read_json

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


def open_diffusers(path: Path) -> ModelSource:
    """Validate a diffusers folder (or cache snapshot) and open it; errors name what is wrong.

    Weights stay under diffusers' names and are mapped onto the modules when loaded.
    """
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
    # SD 1.x and 2.x share their folders; the UNet's config tells them apart.
    for name in folders("sdxl" if SUPPORTED_PIPELINES[cls] == "sdxl" else "sd1"):
        if not (root / name).is_dir():
            raise ModelError(f"{str(root)!r} lacks the {name}/ folder its model_index.json lists")
    unet_config = read_json(root / "unet" / "config.json")
    family = _family(SUPPORTED_PIPELINES[cls], unet_config)

    configs: dict[str, dict[str, Any]] = {"model_index": index}
    files = {"model_index.json": index_path}
    tokenizers = {}
    for name in folders(family):
        folder = root / name
        if name.startswith("tokenizer"):
            tokenizers[name] = folder
            files.update({f"{name}/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file()})
            continue
        config_name = "scheduler_config.json" if name == "scheduler" else "config.json"
        configs[name] = unet_config if name == "unet" else read_json(folder / config_name)
        files[f"{name}/{config_name}"] = folder / config_name
        if name in FAMILIES[family]:
            files.update({f"{name}/{p.name}": p for p in find_weights(folder)})
    name = _display_name(root)
    return ModelSource(
        name=name,
        family=family,
        kind="diffusers",
        root=root,
        configs=configs,
        tokenizers=tokenizers,
        files=files,
        read=lambda component: read_component(root / component),
        defaults=defaults_by_name(name),
    )
