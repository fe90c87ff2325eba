"""Prompt adherence of the default model, measured on the pixels.

A fixed set of 30 prompts each names a dominant colour and a place ("a red sun in the top
left …"). :func:`agrees` decides from image statistics alone whether a picture shows that
colour concentrated at that place: pixels are classified by hue (saturated, not dark, nearest of
the palette's hues) and the density of the named colour in the named region must beat every
competing region. The same function checks the training renderings (the captions must match
what is drawn) and the model's outputs (the model must follow the prompt).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from scenes import COLOURS

CHROMATIC = ("red", "orange", "yellow", "green", "blue", "purple", "pink")
MIN_SATURATION = 0.45
MIN_VALUE = 0.35
MIN_COVERAGE = 0.015  # of the named region: a few stray pixels are not an object


def _hue(rgb: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0]


PALETTE_HUES = np.array([_hue(COLOURS[c]) for c in CHROMATIC])


@dataclass(frozen=True)
class Case:
    colour: str
    obj: str
    position: str  # a key of scenes.POSITIONS' values used here: corners, left, right, center
    setting: str  # the rest of the prompt: landscape and time of day, chosen to contrast

    @property
    def prompt(self) -> str:
        where = {"left": "on the left", "right": "on the right", "center": "in the center"}
        phrase = where.get(self.position, f"in the {self.position}")
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.obj} {phrase} {self.setting}"


# 30 prompts: every chromatic colour, every corner, the sides and the centre, over settings
# whose own colours differ from the named one (a blue boat on a blue sea would test nothing).
CASES = (
    Case("red", "sun", "top left", "over a snowy field at night"),
    Case("red", "circle", "bottom right", "over the desert at night"),
    Case("red", "house", "left", "over a snowy field during the day"),
    Case("red", "square", "top right", "over a city skyline at night"),
    Case("orange", "sun", "top right", "above a forest at night"),
    Case("orange", "circle", "bottom left", "over a snowy field during the day"),
    Case("orange", "star", "center", "over the mountains at night"),
    Case("orange", "triangle", "right", "over a city skyline during the day"),
    Case("yellow", "moon", "top left", "over a calm sea at night"),
    Case("yellow", "star", "top right", "above a forest during the day"),
    Case("yellow", "square", "bottom right", "over a snowy field at dawn"),
    Case("yellow", "circle", "left", "over the mountains at night"),
    Case("green", "tree", "bottom left", "over a snowy field during the day"),
    Case("green", "circle", "top right", "over the desert at night"),
    Case("green", "triangle", "top left", "over a city skyline at sunset"),
    Case("green", "square", "right", "over a calm sea at night"),
    Case("blue", "circle", "top left", "over the desert at sunset"),
    Case("blue", "boat", "bottom right", "over the desert at dawn"),
    Case("blue", "square", "center", "above a forest at night"),
    Case("blue", "triangle", "top right", "over a snowy field at dawn"),
    Case("purple", "circle", "bottom left", "over the desert during the day"),
    Case("purple", "star", "top right", "over a snowy field during the day"),
    Case("purple", "square", "left", "above a forest during the day"),
    Case("purple", "moon", "top left", "over a city skyline at dawn"),
    Case("pink", "circle", "top right", "above a forest at night"),
    Case("pink", "square", "bottom left", "over a calm sea during the day"),
    Case("pink", "star", "right", "over the mountains at night"),
    Case("pink", "house", "bottom right", "over a snowy field at night"),
    Case("red", "triangle", "center", "over a calm sea during the day"),
    Case("yellow", "sun", "bottom left", "over a city skyline at night"),
)
SEEDS = (1, 2)


def colour_mask(image: np.ndarray, colour: str) -> np.ndarray:
    """Pixels (H, W) of an RGB uint8 image whose hue is nearest to ``colour``'s, among the
    chromatic palette, and that are saturated and bright enough to be a drawn object."""
    rgb = image[..., :3].astype(np.float32) / 255
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(mx - mn, 1e-6)
    hue = (
        np.select(
            [mx == r, mx == g],
            [((g - b) / d) % 6, (b - r) / d + 2],
            (r - g) / d + 4,
        )
        / 6
    )
    dist = np.abs(hue[..., None] - PALETTE_HUES)
    dist = np.minimum(dist, 1 - dist)  # hue is circular
    nearest = np.argmin(dist, axis=-1)
    return (nearest == CHROMATIC.index(colour)) & (sat >= MIN_SATURATION) & (mx >= MIN_VALUE)


def _regions(position: str, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Boolean masks: the named region and the regions it must beat."""
    yy, xx = np.mgrid[0:h, 0:w]
    top, left = yy < h / 2, xx < w / 2
    quads = {
        "top left": top & left,
        "top right": top & ~left,
        "bottom left": ~top & left,
        "bottom right": ~top & ~left,
    }
    if position in quads:
        named = quads[position]
        return named, [m for k, m in quads.items() if k != position]
    if position in ("left", "right"):
        named = left if position == "left" else ~left
        return named, [~named]
    if position in ("top", "bottom"):
        named = top if position == "top" else ~top
        return named, [~named]
    if position == "center":
        named = (xx >= w * 0.25) & (xx < w * 0.75) & (yy >= h * 0.3) & (yy < h * 0.65)
        return named, [~named]
    raise ValueError(f"unknown position {position!r}")


def agrees(image: np.ndarray, colour: str, position: str) -> bool:
    """Whether ``colour`` is concentrated at ``position`` in ``image`` (H, W, 3 uint8)."""
    mask = colour_mask(image, colour)
    named, others = _regions(position, *mask.shape)
    density = mask[named].mean()
    return bool(density >= MIN_COVERAGE and all(density > mask[o].mean() for o in others))


def evaluate(
    sd, steps: int = 20, guidance: float = 5.0
) -> list[tuple[Case, int, bool, np.ndarray]]:
    """Generate every case × seed with a loaded ``StableDiffusion``; (case, seed, ok, image)."""
    from edgegen.params import GenerationParams

    results = []
    for case in CASES:
        for seed in SEEDS:
            p = GenerationParams(prompt=case.prompt, seed=seed, steps=steps, guidance=guidance)
            image = sd.generate(p)[0]
            results.append((case, seed, agrees(image, case.colour, case.position), image))
    return results
