"""Scene images cached by what produced them, so re-rendering after an edit redraws only the
scenes whose prompt, seed, size or model changed.

Layout: ``<store home>/cache/images/<first 2 hex>/<sha256>.png``. The key hashes everything
that changes the pixels; the PNG is written atomically, so an interrupted render never leaves
a truncated image that a later render would trust.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgegen import store
from edgegen.fileio import atomic_path

KEY_VERSION = 1  # bump when the meaning of a cached image changes


def default_root() -> Path:
    return store.home() / "cache" / "images"


def scene_key(*, model: str, prompt: str, negative: str, seed: int, width: int, height: int) -> str:
    data = {
        "v": KEY_VERSION,
        "model": model,
        "prompt": prompt,
        "negative": negative,
        "seed": seed,
        "size": [width, height],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def upscale_key(scene: str, upscaler: str, factor: int) -> str:
    """The key of scene image ``scene`` upscaled ×``factor`` by the upscaler named ``upscaler``."""
    data = {"v": KEY_VERSION, "scene": scene, "upscaler": upscaler, "factor": factor}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class ImageCache:
    root: Path
    hits: int = 0
    misses: int = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> Image.Image | None:
        path = self._path(key)
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (FileNotFoundError, UnidentifiedImageError, OSError):
            # unreadable counts as absent: it gets regenerated and overwritten
            self.misses += 1
            return None
        self.hits += 1
        return image

    def put(self, key: str, image: Image.Image) -> Path:
        path = self._path(key)
        with atomic_path(path) as tmp:
            image.convert("RGB").save(tmp, format="PNG", compress_level=1)
        return path
