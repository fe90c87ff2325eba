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
# R'G'B' in 0..255 -> Y' (16..235), Cb and Cr (16..240, centred on 0 before the +128)
_MATRIX = (
    np.array(
        [
            [KR, KG, KB],
            [-KR / (2 * (1 - KB)), -KG / (2 * (1 - KB)), 0.5],
            [0.5, -KG / (2 * (1 - KR)), -KB / (2 * (1 - KR))],
        ]
    )
    * (np.array([219.0, 224.0, 224.0]) / 255.0)[:, None]
).astype(np.float32)


def rgb_to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 RGB with even H, W -> Y ``(H, W)``, U and V ``(H/2, W/2)``, uint8.

    Chroma is the 2x2 average of full-resolution Cb/Cr, i.e. sited between the luma samples;
    players upsample it the same way for any siting, so the difference is invisible.
    """
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sides, got {w}x{h}")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    m = _MATRIX
    y = m[0, 0] * r + m[0, 1] * g + m[0, 2] * b + 16.0
    # chroma is linear in RGB, so average RGB over each 2x2 block first, then convert a
    # quarter of the pixels (measured: far faster than converting all and averaging after)
    rq, gq, bq = (
        (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) * 0.25 for c in (r, g, b)
    )
    cb = m[1, 0] * rq + m[1, 1] * gq + m[1, 2] * bq + 128.0
    cr = m[2, 0] * rq + m[2, 1] * gq + m[2, 2] * bq + 128.0
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, cb, cr))  # type: ignore[return-value]


def image_to_yuv(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rgb_to_yuv(np.asarray(image.convert("RGB")))
