"""Image file output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from edgegen.fileio import atomic_path


def save_png(path: Path, image: np.ndarray, parameters: str | None = None) -> None:
    """Write a uint8 HxWx3 array as PNG, atomically, with an A1111 ``parameters`` chunk."""
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)  # tEXt, or iTXt when not Latin-1
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
