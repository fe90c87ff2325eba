"""Captioned scenes drawn with Pillow: the training data of edgegen's default model.

A :class:`Scene` is a sky (time of day), a landscape, one main object with a colour and a
place on a 3×3 grid, optional stars or clouds and a drawing style. :func:`sample_scene` draws
one from a seeded generator, :func:`render` paints it at any size (composed in 9:16
coordinates, so it stretches gracefully to the model's 128×256) and :func:`caption` names it
in a small grammar ("a red sun in the top left over a calm sea at sunset, watercolor").

The main object is large, flat and saturated on purpose: colour and position are then strongly
and consistently expressed in the pixels, which is what makes prompt adherence learnable by a
small model in a short training run (and measurable, see ``adherence.py``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

TIMES = ("dawn", "day", "sunset", "night")
LANDS = ("sea", "lake", "mountains", "desert", "forest", "snow", "city")
OBJECTS = (
    "sun",
    "moon",
    "star",
    "cloud",
    "tree",
    "house",
    "boat",
    "circle",
    "square",
    "triangle",
)
# Saturated, well-separated colours; the adherence check classifies pixels by these hues.
COLOURS = {
    "red": (222, 38, 38),
    "orange": (246, 138, 28),
    "yellow": (246, 214, 36),
    "green": (46, 172, 62),
    "blue": (36, 84, 224),
    "purple": (138, 56, 196),
    "pink": (242, 116, 182),
    "white": (246, 246, 246),
    "black": (22, 22, 26),
}
# Grid cells (column, row) → the words that name them.
POSITIONS = {
    (0, 0): "top left",
    (1, 0): "top",
    (2, 0): "top right",
    (0, 1): "left",
    (1, 1): "center",
    (2, 1): "right",
    (0, 2): "bottom left",
    (1, 2): "bottom",
    (2, 2): "bottom right",
}
STYLES = ("flat", "watercolor", "pixel art")
EXTRAS = ("none", "stars", "clouds")

# Sky gradients, zenith → horizon.
SKY = {
    "dawn": ((112, 104, 176), (250, 196, 162)),
    "day": ((92, 152, 226), (186, 220, 244)),
    "sunset": ((84, 44, 104), (250, 132, 58)),
    "night": ((8, 10, 34), (34, 40, 86)),
}
# Landscape light per time of day: a multiplier on the land colours.
LIGHT = {"dawn": 0.85, "day": 1.0, "sunset": 0.7, "night": 0.32}
HORIZON = 0.64  # fraction of the height where land begins
OBJECT_SIZE = 0.17  # main object radius, as a fraction of the width (big on purpose)
SUPERSAMPLE = 2  # draw at 2× and downscale: anti-aliased edges the VAE can reproduce


@dataclass(frozen=True)
class Scene:
    time: str
    land: str
    obj: str
    colour: str
    cell: tuple[int, int]  # (column, row) of the main object on the 3×3 grid
    style: str = "flat"
    extra: str = "none"
    seed: int = 0  # places the small things (stars, windows, jitter)

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


def sample_scene(rng: random.Random) -> Scene:
    time = rng.choice(TIMES)
    extra = rng.choice(("stars", "stars", "none", "clouds") if time == "night" else EXTRAS)
    return Scene(
        time=time,
        land=rng.choice(LANDS),
        obj=rng.choice(OBJECTS),
        colour=rng.choice(list(COLOURS)),
        cell=rng.choice(list(POSITIONS)),
        style=rng.choices(STYLES, weights=(0.6, 0.25, 0.15))[0],
        extra=extra,
        seed=rng.randrange(2**31),
    )


def scene_for(index: int, seed: int = 0) -> Scene:
    """The ``index``-th scene of the dataset with this ``seed``; the same on every run."""
    return sample_scene(random.Random(seed * 1_000_003 + index))


def object_center(scene: Scene) -> tuple[float, float]:
    """Centre of the main object in 0..1 image coordinates (x right, y down)."""
    jitter = random.Random(scene.seed)
    col, row = scene.cell
    x = (0.22, 0.5, 0.78)[col] + jitter.uniform(-0.04, 0.04)
    y = (0.16, 0.47, 0.8)[row] + jitter.uniform(-0.03, 0.03)
    return x, y


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _lit(rgb: tuple[int, int, int], time: str) -> tuple[int, ...]:
    k = LIGHT[time]
    return tuple(min(255, round(c * k)) for c in rgb)


def _sky(draw: ImageDraw.ImageDraw, w: int, h: int, time: str) -> None:
    top, bottom = SKY[time]
    horizon = round(h * HORIZON)
    for y in range(horizon + 1):
        draw.line([(0, y), (w, y)], fill=_mix(top, bottom, y / max(1, horizon)))


def _land(draw: ImageDraw.ImageDraw, w: int, h: int, scene: Scene, rng: random.Random) -> None:
    t = scene.time
    y0 = round(h * HORIZON)
    if scene.land == "sea":
        draw.rectangle([0, y0, w, h], fill=_lit((28, 96, 170), t))
        for i in range(6):
            y = y0 + (i + 1) * (h - y0) / 7
            x = rng.uniform(0, w * 0.5)
            draw.line(
                [(x, y), (x + w * 0.4, y)], fill=_lit((120, 170, 220), t), width=max(1, h // 160)
            )
    elif scene.land == "lake":
        draw.rectangle([0, y0, w, h], fill=_lit((76, 150, 62), t))
        draw.ellipse(
            [w * 0.08, y0 + (h - y0) * 0.25, w * 0.92, h - (h - y0) * 0.15],
            fill=_lit((52, 122, 196), t),
        )
    elif scene.land == "mountains":
        draw.rectangle([0, y0, w, h], fill=_lit((96, 104, 92), t))
        for cx, peak in ((0.15, 0.42), (0.5, 0.36), (0.85, 0.44)):
            px, py = cx * w, h * peak
            draw.polygon(
                [(px - w * 0.36, y0 + 1), (px, py), (px + w * 0.36, y0 + 1)],
                fill=_lit((110, 100, 130), t),
            )
            cap = 0.25
            draw.polygon(
                [
                    (px - w * 0.36 * cap, py + (y0 - py) * cap),
                    (px, py),
                    (px + w * 0.36 * cap, py + (y0 - py) * cap),
                ],
                fill=_lit((240, 240, 246), t),
            )
    elif scene.land == "desert":
        draw.rectangle([0, y0, w, h], fill=_lit((226, 186, 118), t))
        for i in range(3):
            cx = rng.uniform(0, w)
            draw.ellipse(
                [cx - w * 0.5, y0 + (h - y0) * (0.2 + 0.25 * i), cx + w * 0.5, h * 1.4],
                fill=_lit((206, 160, 96), t),
            )
    elif scene.land == "forest":
        draw.rectangle([0, y0, w, h], fill=_lit((40, 96, 44), t))
        for i in range(9):
            cx = (i + 0.5) * w / 9 + rng.uniform(-w * 0.02, w * 0.02)
            th = h * rng.uniform(0.08, 0.13)
            draw.polygon(
                [(cx - w * 0.07, y0 + h * 0.02), (cx, y0 - th), (cx + w * 0.07, y0 + h * 0.02)],
                fill=_lit((24, 70, 32), t),
            )
    elif scene.land == "snow":
        draw.rectangle([0, y0, w, h], fill=_lit((232, 238, 246), t))
        draw.ellipse(
            [-w * 0.3, y0 + (h - y0) * 0.35, w * 0.7, h * 1.3], fill=_lit((206, 218, 236), t)
        )
    elif scene.land == "city":
        draw.rectangle([0, y0, w, h], fill=_lit((70, 70, 78), t))
        x = 0.0
        while x < w:
            bw = w * rng.uniform(0.09, 0.16)
            top = y0 - h * rng.uniform(0.05, 0.2)
            draw.rectangle([x, top, x + bw, y0 + 1], fill=_lit((52, 54, 66), t))
            if t == "night":
                for wy in range(int(top + h * 0.015), y0 - 2, max(2, h // 40)):
                    for wx in (x + bw * 0.25, x + bw * 0.6):
                        if rng.random() < 0.5:
                            s = max(1, w // 90)
                            draw.rectangle([wx, wy, wx + s, wy + s], fill=(250, 220, 120))
            x += bw + w * 0.01


def _extras(draw: ImageDraw.ImageDraw, w: int, h: int, scene: Scene, rng: random.Random) -> None:
    if scene.extra == "stars":
        for _ in range(28):
            x, y = rng.uniform(0, w), rng.uniform(0, h * HORIZON * 0.95)
            r = max(1.0, w / 160) * rng.uniform(0.8, 1.4)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 236))
    elif scene.extra == "clouds":
        for _ in range(2):
            x, y = rng.uniform(0.1, 0.9) * w, rng.uniform(0.08, 0.5) * h
            _cloud(
                draw, x, y, w * 0.08, (236, 238, 242) if scene.time != "night" else (90, 92, 110)
            )


def _cloud(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple[int, ...]) -> None:
    for dx, dy, k in ((-1.0, 0.2, 0.7), (0.0, -0.15, 1.0), (1.0, 0.2, 0.75), (0.0, 0.35, 0.8)):
        rr = r * k
        draw.ellipse(
            [x + dx * r - rr, y + dy * r - rr, x + dx * r + rr, y + dy * r + rr], fill=fill
        )


def _object(draw: ImageDraw.ImageDraw, img: Image.Image, scene: Scene, w: int, h: int) -> None:
    cx, cy = object_center(scene)
    x, y, r = cx * w, cy * h, OBJECT_SIZE * w
    fill = COLOURS[scene.colour]
    kind = scene.obj
    if kind == "sun":
        for k in range(12):
            a = 2 * math.pi * k / 12
            draw.line(
                [
                    (x + math.cos(a) * r * 0.85, y + math.sin(a) * r * 0.85),
                    (x + math.cos(a) * r * 1.25, y + math.sin(a) * r * 1.25),
                ],
                fill=fill,
                width=max(1, round(r / 6)),
            )
        draw.ellipse([x - r * 0.8, y - r * 0.8, x + r * 0.8, y + r * 0.8], fill=fill)
    elif kind == "moon":
        mask = Image.new("L", img.size, 0)
        m = ImageDraw.Draw(mask)
        m.ellipse([x - r, y - r, x + r, y + r], fill=255)
        m.ellipse([x - r * 0.45, y - r * 1.05, x + r * 1.45, y + r * 0.85], fill=0)
        img.paste(fill, (0, 0, *img.size), mask)
    elif kind == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + math.pi * k / 5
            rr = r * (1.15 if k % 2 == 0 else 0.5)
            pts.append((x + math.cos(a) * rr, y + math.sin(a) * rr))
        draw.polygon(pts, fill=fill)
    elif kind == "cloud":
        _cloud(draw, x, y, r * 0.62, fill)
    elif kind == "tree":
        draw.rectangle([x - r * 0.16, y + r * 0.2, x + r * 0.16, y + r * 1.15], fill=(104, 66, 34))
        draw.ellipse([x - r * 0.85, y - r * 1.05, x + r * 0.85, y + r * 0.55], fill=fill)
    elif kind == "house":
        draw.rectangle([x - r * 0.8, y - r * 0.2, x + r * 0.8, y + r * 0.95], fill=fill)
        draw.polygon(
            [(x - r * 1.0, y - r * 0.15), (x, y - r * 1.0), (x + r * 1.0, y - r * 0.15)],
            fill=_mix(fill, (0, 0, 0), 0.35),
        )
        draw.rectangle([x - r * 0.18, y + r * 0.4, x + r * 0.18, y + r * 0.95], fill=(70, 46, 30))
    elif kind == "boat":
        draw.polygon(
            [
                (x - r * 1.1, y + r * 0.25),
                (x + r * 1.1, y + r * 0.25),
                (x + r * 0.7, y + r * 0.8),
                (x - r * 0.7, y + r * 0.8),
            ],
            fill=fill,
        )
        draw.line(
            [(x, y + r * 0.25), (x, y - r * 1.0)], fill=(70, 50, 40), width=max(1, round(r / 8))
        )
        draw.polygon(
            [
                (x + r * 0.05, y - r * 0.95),
                (x + r * 0.05, y + r * 0.15),
                (x + r * 0.75, y + r * 0.15),
            ],
            fill=_mix(fill, (255, 255, 255), 0.55),
        )
    elif kind == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif kind == "square":
        draw.rectangle([x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85], fill=fill)
    elif kind == "triangle":
        draw.polygon(
            [(x - r * 1.05, y + r * 0.8), (x, y - r * 1.0), (x + r * 1.05, y + r * 0.8)], fill=fill
        )
    else:
        raise ValueError(f"unknown object {kind!r}; known: {', '.join(OBJECTS)}")


def _style(img: Image.Image, scene: Scene, w: int, h: int) -> Image.Image:
    if scene.style == "watercolor":
        img = img.filter(ImageFilter.GaussianBlur(radius=w / 110))
        paper = Image.effect_noise((max(1, w // 4), max(1, h // 4)), 40).resize(
            (w, h), Image.BILINEAR
        )
        return Image.blend(img, Image.merge("RGB", (paper, paper, paper)), 0.12)
    if scene.style == "pixel art":
        block = max(1, w // 24)
        small = img.resize((max(1, w // block), max(1, h // block)), Image.BOX)
        return small.resize((w, h), Image.NEAREST)
    return img


def render(scene: Scene, size: tuple[int, int] = (144, 256)) -> Image.Image:
    """Paint ``scene`` as an RGB image of ``size`` (width, height); deterministic."""
    w, h = size
    sw, sh = w * SUPERSAMPLE, h * SUPERSAMPLE
    img = Image.new("RGB", (sw, sh))
    draw = ImageDraw.Draw(img)
    rng = random.Random(scene.seed)
    _sky(draw, sw, sh, scene.time)
    _extras(draw, sw, sh, scene, rng)
    _land(draw, sw, sh, scene, rng)
    _object(draw, img, scene, sw, sh)
    img = img.resize((w, h), Image.LANCZOS)
    return _style(img, scene, w, h)


# Caption grammar. Every clause names what the rendering shows; clauses may be left out
# (the picture still has them), which teaches the model to fill in what a prompt omits.
LAND_PHRASES = {
    "sea": ("over a calm sea", "above the sea", "over the ocean"),
    "lake": ("by a lake", "over a lake"),
    "mountains": ("over the mountains", "above snowy mountains"),
    "desert": ("over the desert", "above desert dunes"),
    "forest": ("above a forest", "over a pine forest"),
    "snow": ("over a snowy field", "above the snow"),
    "city": ("over a city skyline", "above the city"),
}
TIME_PHRASES = {
    "dawn": ("at dawn", "at sunrise"),
    "day": ("during the day", "at noon", "under a blue sky"),
    "sunset": ("at sunset", "at dusk"),
    "night": ("at night", "under a night sky"),
}
POSITION_PHRASES = {
    "top left": ("in the top left", "in the upper left corner"),
    "top": ("at the top", "high in the sky"),
    "top right": ("in the top right", "in the upper right corner"),
    "left": ("on the left", "on the left side"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "on the right side"),
    "bottom left": ("in the bottom left", "in the lower left corner"),
    "bottom": ("at the bottom", "at the bottom center"),
    "bottom right": ("in the bottom right", "in the lower right corner"),
}
STYLE_PHRASES = {
    "flat": ("", "flat illustration"),
    "watercolor": ("watercolor", "watercolor painting"),
    "pixel art": ("pixel art", "pixel art"),
}
EXTRA_PHRASES = {
    "none": ("",),
    "stars": ("with stars", "with many stars"),
    "clouds": ("with clouds", "with white clouds"),
}


def caption(scene: Scene, rng: random.Random, drop: float = 0.15) -> str:
    """Name ``scene`` in the caption grammar; each secondary clause is left out with ``drop``."""

    def pick(options: tuple[str, ...]) -> str:
        return rng.choice(options)

    keep = lambda: rng.random() >= drop  # noqa: E731
    colour = scene.colour if rng.random() >= drop / 2 else ""
    article = "an" if (colour or scene.obj)[0] in "aeiou" else "a"
    words = [article, colour, scene.obj]
    if rng.random() >= drop / 2:
        words.append(pick(POSITION_PHRASES[scene.position]))
    if keep():
        words.append(pick(LAND_PHRASES[scene.land]))
    if keep():
        words.append(pick(TIME_PHRASES[scene.time]))
    text = " ".join(w for w in words if w)
    extra = pick(EXTRA_PHRASES[scene.extra]) if keep() else ""
    style = pick(STYLE_PHRASES[scene.style]) if keep() else ""
    for clause in (extra, style):
        if clause:
            text += ", " + clause
    return text


def caption_words() -> set[str]:
    """Every word the grammar can produce: the tokenizer's vocabulary is built to cover them."""
    phrases = [*COLOURS, *OBJECTS, *TIMES, *LANDS, *STYLES, "a", "an", "the"]
    for table in (LAND_PHRASES, TIME_PHRASES, POSITION_PHRASES, STYLE_PHRASES, EXTRA_PHRASES):
        for options in table.values():
            phrases.extend(options)
    return {w for p in phrases for w in p.replace(",", " ").split()}
