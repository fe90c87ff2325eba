"""What an edit starts from: the picture, the region to repaint, and frames to extend.

- **img2img**: an :class:`Edit` with an image and no mask; ``GenerationParams.strength`` says
  how much of the schedule is run again (0 keeps the picture, 1 redraws it from noise).
- **inpainting**: an image and a mask (white = repaint). Dedicated inpainting UNets (9 input
  channels) see the mask and the masked picture; regular models are blended back to the
  noised original outside the mask after every step, as diffusers' inpaint pipeline does.
- **outpainting**: :func:`extend` pads the picture (edge pixels, so the new area starts from
  plausible colours) and masks the padding; the result is inpainted at full strength and the
  original pixels are pasted back (:func:`paste_back`), so the source region is kept exactly.

Images are uint8 RGB arrays (H, W, 3); masks float32 (H, W) in [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.errors import InputFileError, UsageError

SIDES = ("left", "right", "up", "down")


@dataclass(frozen=True)
class Edit:
    image: np.ndarray  # uint8 (H, W, 3), the size of the image to make
    mask: np.ndarray | None = None  # float32 (H, W) in [0, 1]; 1 = repaint; None = img2img
    keep: np.ndarray | None = None  # outpainting: float32 (H, W), 1 where source pixels stay

    @property
    def default_strength(self) -> float:
        """0.75 for img2img (A1111's default); 1 for inpainting and outpainting (diffusers')."""
        return 0.75 if self.mask is None else 1.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]


def read_image(path: Path, what: str = "image", alpha: bool = False) -> np.ndarray:
    """An RGB uint8 array from an image file (RGBA, with ``alpha``, when the file has
    transparency); an unreadable or truncated file is one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            transparent = alpha and (im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info)
            rgb = im.convert("RGBA" if transparent else "RGB")
    except FileNotFoundError as e:
        raise InputFileError(f"{what} {str(path)!r} does not exist") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputFileError(
            f"{what} {str(path)!r} is not a readable image (PNG, JPEG, WebP…): {e}"
        ) from e
    return np.asarray(rgb, dtype=np.uint8)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask file (white = repaint) as float32 (H, W) in [0, 1]; it must be ``size`` (W, H)."""
    rgb = read_image(path, "mask")
    if (rgb.shape[1], rgb.shape[0]) != size:
        raise InputFileError(
            f"mask {str(path)!r} is {rgb.shape[1]}x{rgb.shape[0]} but the image is "
            f"{size[0]}x{size[1]}; they must be the same size"
        )
    # Luma as Pillow's "L" mode computes it, the grey diffusers' mask processor reads.
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(gray / 255.0, 0.0, 1.0)


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` (Lanczos), as a pipeline needs multiples of
    64; unchanged when it already is that size."""
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def parse_extend(spec: str) -> dict[str, int]:
    """``"left:64,down:128"`` → {"left": 64, "down": 128}; sides once each, pixels > 0."""
    out: dict[str, int] = {}
    for part in spec.split(","):
        m = re.fullmatch(r"\s*([a-z]+)\s*:\s*(\d+)\s*", part)
        if m is None or m.group(1) not in SIDES or m.group(1) in out or int(m.group(2)) < 1:
            raise UsageError(
                f"extend {part.strip()!r} is not SIDE:PIXELS with SIDE one of "
                f"{', '.join(SIDES)} (each once) and PIXELS ≥ 1, e.g. 'down:256'",
                option="extend",
            )
        out[m.group(1)] = int(m.group(2))
    return out


def extend_to(width: int, height: int, target: tuple[int, int]) -> dict[str, int]:
    """The padding that grows a ``width`` x ``height`` picture to ``target`` (W, H), split
    evenly between opposite sides (a square to 9:16: half above, half below)."""
    tw, th = target
    if tw < width or th < height:
        raise UsageError(
            f"extend-to {tw}x{th} is smaller than the image ({width}x{height}); "
            "it must be at least as wide and as tall",
            option="extend_to",
        )
    pads = {"left": (tw - width) // 2, "up": (th - height) // 2}
    pads["right"], pads["down"] = tw - width - pads["left"], th - height - pads["up"]
    return {k: v for k, v in pads.items() if v > 0}


def extend(image: np.ndarray, pads: dict[str, int], feather: int = 8) -> Edit:
    """The outpainting edit: ``image`` padded by ``pads`` pixels per side with its edge pixels,
    the padding masked for repainting, and a ``keep`` map that is 1 over the source and fades
    to 0 over ``feather`` pixels at each extended border (so the seam blends)."""
    h, w = image.shape[:2]
    left, right = pads.get("left", 0), pads.get("right", 0)
    up, down = pads.get("up", 0), pads.get("down", 0)
    big = np.pad(image, ((up, down), (left, right), (0, 0)), mode="edge")
    mask = np.ones(big.shape[:2], dtype=np.float32)
    mask[up : up + h, left : left + w] = 0.0
    keep = np.zeros(big.shape[:2], dtype=np.float32)
    ys = _fade(h, feather if up else 0, feather if down else 0)
    xs = _fade(w, feather if left else 0, feather if right else 0)
    keep[up : up + h, left : left + w] = ys[:, None] * xs[None, :]
    return Edit(big, mask, keep)


def _fade(n: int, start: int, end: int) -> np.ndarray:
    """1 along ``n`` pixels, ramping up over the first ``start`` and down over the last ``end``."""
    ramp = np.ones(n, dtype=np.float32)
    if start:
        ramp[:start] = np.minimum(ramp[:start], (np.arange(start) + 1) / (start + 1))
    if end:
        ramp[n - end :] = np.minimum(ramp[n - end :], (np.arange(end)[::-1] + 1) / (end + 1))
    return ramp


def paste_back(result: np.ndarray, edit: Edit) -> np.ndarray:
    """``result`` (uint8 (H, W, 3)) with the source pixels of an outpainting edit restored."""
    if edit.keep is None:
        return result
    k = edit.keep[..., None]
    out = k * edit.image.astype(np.float32) + (1 - k) * result.astype(np.float32)
    return np.round(out).astype(np.uint8)
