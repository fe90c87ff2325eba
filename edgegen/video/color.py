"""RGB -> Y'CbCr 4:2:0 with the BT.709 matrix, limited ("TV") range.

Frames are prepared directly as planes: each scene image is converted once, and every frame
is then resampled plane by plane (1.5 bytes a pixel instead of 3, and no per-frame colour
conversion). The matrix here must agree with the tags the encoder writes (BT.709, TV range),
or players shift colours.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# BT.709 luma coefficients (ITU-R BT.709-6, item 3.2)
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB


def rgb_to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 RGB with even H, W -> Y ``(H, W)``, U and V ``(H/2, W/2)``, uint8.

    Chroma is the 2x2 average of full-resolution Cb/Cr, i.e. sited between the luma samples;
    players upsample it the same way for any siting, so the difference is invisible.
    """
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sides, got {w}x{h}")
    x = rgb.astype(np.float32) * (1.0 / 255.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2.0 * (1.0 - KB))
    cr = (r - y) / (2.0 * (1.0 - KR))
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    yq = np.clip(np.rint(16.0 + 219.0 * y), 0, 255).astype(np.uint8)
    uq = np.clip(np.rint(128.0 + 224.0 * cb), 0, 255).astype(np.uint8)
    vq = np.clip(np.rint(128.0 + 224.0 * cr), 0, 255).astype(np.uint8)
    return yq, uq, vq


def image_to_yuv(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rgb_to_yuv(np.asarray(image.convert("RGB")))
