"""Word-timed captions: pages of a few words, the spoken word highlighted, drawn by us.

Pages are built from measured text widths (not character counts), break at pauses and
sentence ends, and never span two scenes. Each page state (page, active word) is drawn once
with Pillow — white text, black outline, soft shadow — converted to premultiplied Y'CbCr
overlays and blended into the frame planes in fixed point, so a frame's caption costs one
small blend.

Fonts: edgegen bundles none. It looks for a bold sans that the OS ships (Arial/Helvetica on
macOS, DejaVu/Liberation/Noto on Linux, Arial on Windows), then CJK-capable fonts (PingFang,
Hiragino, Noto CJK, WenQuanYi, Droid Fallback), and always ends with the scalable Aileron face
that Pillow itself carries, so captions render on any machine. Each word is drawn with the
first font that has all of its glyphs; missing glyphs are reported, not hidden.
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from edgegen.timings import Word
from edgegen.video.color import image_to_yuv

FONT_CANDIDATES = (
    # Latin bold sans first: they set the look
    "/System/Library/Fonts/Supplemental/Arial Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
    # wide coverage (CJK) for words the Latin fonts lack
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "C:/Windows/Fonts/msyh.ttc",
)
HIGHLIGHT = (255, 210, 31)  # the active word
TEXT = (255, 255, 255)
OUTLINE = (0, 0, 0)


@dataclass(frozen=True)
class Page:
    words: tuple[Word, ...]
    show: float  # seconds: when the page appears ...
    hide: float  # ... and disappears (may outlast the last word a little)

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    @property
    def cue(self) -> Word:
        """The subtitle cue: exactly from the first word's start to the last word's end."""
        return Word(self.text, self.words[0].start, self.words[-1].end)


@dataclass(frozen=True)
class CaptionStyle:
    size: float = 0.046  # font size as a fraction of the frame height
    max_lines: int = 2
    max_chars: int = 32  # a page's reading load, whatever fits on the lines
    pause: float = 0.35  # a silence this long (s) starts a new page
    hold: float = 0.5  # keep a page up this long after its last word if nothing follows
    left: float = 0.1  # safe area, as fractions of the frame: clear of the app's buttons
    right: float = 0.1
    bottom: float = 0.26  # clear of the title/description overlay of Shorts/TikTok/Reels
    font: str | None = None  # a font file to try before the built-in list


@functools.cache
def _font_files(preferred: str | None) -> tuple[str, ...]:
    found = [
        p for p in ([preferred] if preferred else []) + list(FONT_CANDIDATES) if os.path.isfile(p)
    ]
    found += sorted(glob.glob("/usr/share/fonts/**/NotoSansCJK*.tt[cf]", recursive=True))
    return tuple(dict.fromkeys(found))


class Fonts:
    """The fallback chain at one pixel size."""

    def __init__(self, px: int, preferred: str | None = None):
        self.px = px
        self.faces: list[ImageFont.FreeTypeFont] = []
        for path in _font_files(preferred):
            try:
                self.faces.append(ImageFont.truetype(path, px))
            except OSError:
                continue
        self.faces.append(ImageFont.load_default(size=px))  # Pillow's own Aileron
        self.missing: set[str] = set()
        self._coverage: dict[tuple[int, str], bool] = {}

    def _has(self, face_index: int, ch: str) -> bool:
        """True when the face draws ``ch`` with a real glyph, not its .notdef box.

        Pillow exposes no character map, so compare against the glyph of a code point no
        font maps (plane-16 private use): an unmapped character renders as that same box.
        """
        if ch.isspace():
            return True
        key = (face_index, ch)
        if key not in self._coverage:
            face = self.faces[face_index]
            notdef = face.getmask("\U0010fffd")
            mask = face.getmask(ch)
            self._coverage[key] = mask.size != notdef.size or bytes(mask) != bytes(notdef)
        return self._coverage[key]

    def face_for(self, word: str) -> ImageFont.FreeTypeFont:
        for i, face in enumerate(self.faces):
            if all(self._has(i, ch) for ch in word):
                return face
        self.missing.update(
            ch for ch in word if not any(self._has(i, ch) for i in range(len(self.faces)))
        )
        return self.faces[0]

    def width(self, word: str) -> float:
        return self.face_for(word).getlength(word)


@dataclass
class Overlay:
    """A drawn page state, premultiplied, ready to blend at even offsets (x, y)."""

    x: int
    y: int
    planes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (pre, inv)

    def apply(self, frame_planes: list[np.ndarray]) -> None:
        for i, (plane, (pre, inv)) in enumerate(zip(frame_planes, self.planes, strict=True)):
            sx, sy = (self.x, self.y) if i == 0 else (self.x // 2, self.y // 2)
            h, w = pre.shape
            region = plane[sy : sy + h, sx : sx + w]
            region[...] = ((region * inv + pre + 128) >> 8).astype(np.uint8)


class Captioner:
    def __init__(self, width: int, height: int, style: CaptionStyle | None = None):
        self.width, self.height = width, height
        self.style = style or CaptionStyle()
        self.px = max(8, round(height * self.style.size))
        self.fonts = Fonts(self.px, self.style.font)
        self.max_width = width * (1.0 - self.style.left - self.style.right)
        self.line_height = round(self.px * 1.25)
        self.stroke = max(1, round(self.px * 0.09))
        self._overlays: dict[tuple[Page, int | None], Overlay] = {}

    # 1. Pagination --------------------------------------------------------------------------

    def _lines(self, words: list[str]) -> list[list[str]]:
        """Greedy wrap by measured width."""
        space = self.fonts.faces[0].getlength(" ")
        lines: list[list[str]] = [[]]
        used = 0.0
        for w in words:
            ww = self.fonts.width(w)
            if lines[-1] and used + space + ww > self.max_width:
                lines.append([])
                used = 0.0
            used += (space if lines[-1] else 0.0) + ww
            lines[-1].append(w)
        return lines

    def paginate(self, words: list[Word], until: float | None = None) -> list[Page]:
        """Pages for one scene's words (global times). ``until``: when the scene ends."""
        groups: list[list[Word]] = []
        for w in words:
            cur = groups[-1] if groups else None
            if cur:
                text = " ".join(x.word for x in [*cur, w])
                fits = len(self._lines(text.split())) <= self.style.max_lines
                pause = w.start - cur[-1].end >= self.style.pause
                sentence = (
                    cur[-1].word.rstrip("\"')”’").endswith((".", "!", "?", "…", "。", "！", "？"))
                )
                if fits and len(text) <= self.style.max_chars and not pause and not sentence:
                    cur.append(w)
                    continue
            groups.append([w])
        pages = []
        for i, g in enumerate(groups):
            hide = g[-1].end + self.style.hold
            if i + 1 < len(groups):
                hide = min(hide, groups[i + 1][0].start)  # never two pages at once
            if until is not None:
                hide = min(hide, until)
            pages.append(Page(tuple(g), g[0].start, max(hide, g[-1].end)))
        return pages

    # 2. Drawing -----------------------------------------------------------------------------

    def draw(self, page: Page, active: int | None) -> Image.Image:
        """The page as an RGBA image of the whole frame (for previews and tests)."""
        canvas = Image.new("RGBA", (self.width, self.height), (0, 0, 0, 0))
        ov_img, (x, y) = self._draw_block(page, active)
        canvas.alpha_composite(ov_img, (x, y))
        return canvas

    def _draw_block(self, page: Page, active: int | None) -> tuple[Image.Image, tuple[int, int]]:
        words = [w.word for w in page.words]
        lines = self._lines(words)
        space = self.fonts.faces[0].getlength(" ")
        pad = self.stroke * 3
        block_w = int(self.max_width) + 2 * pad
        block_h = self.line_height * len(lines) + 2 * pad
        block_w += block_w % 2
        block_h += block_h % 2
        text = Image.new("RGBA", (block_w, block_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(text)
        shadow = Image.new("L", (block_w, block_h), 0)
        sdraw = ImageDraw.Draw(shadow)
        index = 0
        for row, line in enumerate(lines):
            widths = [self.fonts.width(w) for w in line]
            x = pad + (self.max_width - (sum(widths) + space * (len(line) - 1))) / 2
            y = pad + row * self.line_height
            for w, ww in zip(line, widths, strict=True):
                face = self.fonts.face_for(w)
                fill = HIGHLIGHT if index == active else TEXT
                args = {"font": face, "stroke_width": self.stroke, "anchor": "ls"}
                base = (x, y + self.px)
                sdraw.text((base[0] + self.stroke, base[1] + self.stroke), w, fill=160, **args)
                draw.text(base, w, fill=fill, stroke_fill=OUTLINE, **args)
                x += ww + space
                index += 1
        shadow = shadow.filter(ImageFilter.GaussianBlur(self.stroke))
        out = Image.new("RGBA", (block_w, block_h), (0, 0, 0, 0))
        out.putalpha(shadow)
        out.alpha_composite(text)
        bx = round((self.width - block_w) / 2) // 2 * 2
        by = round(self.height * (1.0 - self.style.bottom) - block_h) // 2 * 2
        return out, (bx, by)

    def overlay(self, page: Page, active: int | None) -> Overlay:
        """The drawn state, cached while its page is on screen (frames arrive in order)."""
        if (page, active) in self._overlays:
            return self._overlays[page, active]
        if any(p != page for p, _ in self._overlays):
            self._overlays.clear()  # a new page: memory stays at one page's states
        img, (x, y) = self._draw_block(page, active)
        rgba = np.asarray(img)
        alpha = rgba[..., 3].astype(np.uint16)
        a = (alpha * 256 + 127) // 255
        ac = (
            a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2)
            .mean(axis=(1, 3))
            .round()
            .astype(np.uint16)
        )
        yuv = image_to_yuv(Image.fromarray(np.ascontiguousarray(rgba[..., :3])))
        ov = Overlay(x, y)
        for plane, alpha_plane in zip(yuv, (a, ac, ac), strict=True):
            ov.planes.append((plane.astype(np.uint16) * alpha_plane, 256 - alpha_plane))
        self._overlays[page, active] = ov
        return ov

    def state_at(
        self, pages: list[Page], t: float, start_page: int = 0
    ) -> tuple[int, Page, int | None] | None:
        """The page on screen at ``t`` and its active word, searching from ``start_page``."""
        for i in range(start_page, len(pages)):
            p = pages[i]
            if p.show > t:
                return None
            if t < p.hide:
                active = None
                for k, w in enumerate(p.words):
                    if w.start <= t:
                        active = k
                return i, p, active
        return None
