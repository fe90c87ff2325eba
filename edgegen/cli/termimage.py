"""Pictures in the terminal: the kitty graphics protocol, iTerm2 inline images, Sixel, and
colour half-blocks everywhere else.

    protocol = detect()                      # from the terminal, or EDGEGEN_IMAGE_PROTOCOL
    sys.stdout.write(encode(image, protocol, fit_cells(image.size, box)))

Each encoder follows its protocol's own specification and nothing more:

- kitty (https://sw.kovidgoyal.net/kitty/graphics-protocol/): ``ESC _ G keys ; payload ESC \\``
  transmitting a PNG (``f=100``) and placing it (``a=T``) over ``c`` columns and ``r`` rows, the
  base64 payload in chunks of at most 4096 bytes, ``m=1`` on every chunk but the last
  (``m=0``), the other keys on the first chunk only; ``q=2`` keeps the terminal from answering
  into the prompt.
- iTerm2 (https://iterm2.com/documentation-images.html): ``ESC ] 1337 ; File = args : base64 BEL``
  with ``inline=1``, the file's ``size`` in bytes and the width and height in cells.
- Sixel (DEC STD 070 / VT330 manual): ``ESC P q``, raster attributes ``"1;1;W;H``, colour
  registers ``#n;2;r;g;b`` in percent, then bands six pixels tall: per colour ``#n`` and
  characters ``?``..``~`` (63 + the band's bit pattern, top pixel = bit 0), ``!count char`` for
  runs, ``$`` back to the band's start, ``-`` to the next band; ``ESC \\`` ends it.
- blocks: each cell is ``▀`` (U+2580) with the upper pixel as 24-bit foreground and the lower
  one as background.

Inside tmux the kitty and iTerm2 sequences are wrapped for passthrough (``ESC P tmux;`` with
every ESC doubled, then ``ESC \\``; tmux needs ``set -g allow-passthrough on``). No library was
used: textual-image (the library that does this for Textual and rich) has no iTerm2 protocol
and would pull Textual into a line-oriented UI; the encoders are about a hundred lines, and the
tests check each against its specification byte for byte.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import sys

import numpy as np
from PIL import Image

from edgegen.errors import UsageError

PROTOCOLS = ("kitty", "iterm", "sixel", "blocks", "none")
ENV = "EDGEGEN_IMAGE_PROTOCOL"
ESC = "\x1b"
ST = ESC + "\\"  # string terminator
KITTY_CHUNK = 4096
CELL = (10, 20)  # a cell's pixels when the terminal does not say (TIOCGWINSZ)


# --- Which protocol ---------------------------------------------------------------------


def detect(environ: dict[str, str] | None = None, tty: bool | None = None) -> str:
    """The protocol to use: ``EDGEGEN_IMAGE_PROTOCOL`` if set, else what the terminal's
    environment says it speaks, else ``blocks`` (``none`` off a terminal)."""
    env = os.environ if environ is None else environ
    forced = env.get(ENV, "").strip().lower()
    if forced:
        if forced not in PROTOCOLS:
            raise UsageError(
                f"{ENV}={forced!r} is not a protocol; use one of {', '.join(PROTOCOLS)}"
            )
        return forced
    if tty is None:
        tty = sys.stdout.isatty()
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if not tty or term == "dumb":
        return "none"
    if term in ("xterm-kitty", "xterm-ghostty") or program == "ghostty" or "KITTY_WINDOW_ID" in env:
        return "kitty"
    if program in ("iTerm.app", "WezTerm", "vscode") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if "TMUX" in env:
        return "blocks"  # the outer terminal is unknown unless it left its variables above
    if term.startswith(("foot", "mlterm", "contour")) or "WT_SESSION" in env:
        return "sixel"
    if term.startswith("xterm") and environ is None and _answers_sixel():
        return "sixel"
    return "blocks"


def _answers_sixel(timeout: float = 0.15) -> bool:
    """Ask the terminal for its device attributes (DA1); attribute 4 is Sixel graphics."""
    try:
        import select
        import termios
        import tty

        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return False
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        return False
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        sys.stdout.write(ESC + "[c")
        sys.stdout.flush()
        reply = b""
        while not reply.endswith(b"c") and select.select([fd], [], [], timeout)[0]:
            reply += os.read(fd, 64)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    m = re.search(rb"\x1b\[\?([\d;]*)c", reply)
    return bool(m) and "4" in m.group(1).decode().split(";")


def in_tmux(environ: dict[str, str] | None = None) -> bool:
    return "TMUX" in (os.environ if environ is None else environ)


# --- How big ----------------------------------------------------------------------------


def cell_pixels() -> tuple[int, int]:
    """A terminal cell's (width, height) in pixels, as the terminal reports it, else CELL."""
    try:
        import fcntl
        import struct
        import termios

        rows, cols, xpix, ypix = struct.unpack(
            "HHHH", fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        )
        if rows and cols and xpix and ypix:
            return xpix // cols, ypix // rows
    except (ImportError, OSError, ValueError):
        pass
    return CELL


def fit_cells(
    size: tuple[int, int],
    box: tuple[int, int],
    cell: tuple[int, int] = CELL,
    max_scale: float = 1.0,
) -> tuple[int, int]:
    """(columns, rows) that show an image of ``size`` pixels as large as fits in ``box``
    cells, at most ``max_scale`` times its own pixels, keeping its aspect (cells are
    ``cell`` pixels)."""
    w, h = size
    cols, rows = box
    scale = min(cols * cell[0] / w, rows * cell[1] / h, max_scale)
    return max(1, round(w * scale / cell[0])), max(1, round(h * scale / cell[1]))


# --- Encoders -----------------------------------------------------------------------------


def encode(
    image: Image.Image,
    protocol: str,
    cells: tuple[int, int],
    cell: tuple[int, int] = CELL,
    tmux: bool = False,
) -> str:
    """The text that shows ``image`` over ``cells`` (columns, rows), ending on a new line."""
    cols, rows = cells
    if protocol == "kitty":
        return _passthrough(kitty(image, cols, rows), tmux) + "\n"
    if protocol == "iterm":
        return _passthrough(iterm(image, cols, rows), tmux) + "\n"
    if protocol == "sixel":
        return sixel(image.resize((cols * cell[0], rows * cell[1]), Image.LANCZOS)) + "\n"
    if protocol == "blocks":
        return blocks(image.resize((cols, 2 * rows), Image.LANCZOS))
    if protocol == "none":
        return ""
    raise UsageError(f"image protocol {protocol!r} is unknown; use one of {', '.join(PROTOCOLS)}")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def kitty(image: Image.Image, cols: int, rows: int) -> str:
    payload = base64.standard_b64encode(png_bytes(image)).decode("ascii")
    chunks = [payload[i : i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)] or [""]
    out = []
    for i, chunk in enumerate(chunks):
        more = int(i < len(chunks) - 1)
        keys = f"a=T,f=100,q=2,c={cols},r={rows},m={more}" if i == 0 else f"m={more}"
        out.append(f"{ESC}_G{keys};{chunk}{ST}")
    return "".join(out)


def iterm(image: Image.Image, cols: int, rows: int) -> str:
    data = png_bytes(image)
    payload = base64.standard_b64encode(data).decode("ascii")
    args = f"inline=1;size={len(data)};width={cols};height={rows};preserveAspectRatio=1"
    return f"{ESC}]1337;File={args}:{payload}\a"


def _passthrough(sequence: str, tmux: bool) -> str:
    if not tmux:
        return sequence
    return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"


def palette_indices(image: Image.Image, colors: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(indices H×W, palette N×3 uint8): the image's own colours in order of first appearance
    when it has at most ``colors``, else a median-cut palette of that many."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    flat = rgb.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    unique, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    if len(unique) <= colors:
        order = np.argsort(first)  # palette in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return rank[inverse].reshape(rgb.shape[:2]), flat[first[order]]
    q = image.convert("RGB").quantize(colors, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal = np.asarray(q.getpalette()[: 3 * colors], dtype=np.uint8).reshape(-1, 3)
    return np.asarray(q, dtype=np.int64), pal


def _runs(text: str) -> str:
    # Sixel's repeat introducer: "!14~" is fourteen "~"; worth it from four on.
    return re.sub(r"(.)\1{3,}", lambda m: f"!{len(m.group(0))}{m.group(1)}", text)


def sixel(image: Image.Image) -> str:
    idx, pal = palette_indices(image)
    h, w = idx.shape
    out = [f'{ESC}Pq"1;1;{w};{h}']
    for n, (r, g, b) in enumerate(pal.tolist()):
        out.append(f"#{n};2;{round(r * 100 / 255)};{round(g * 100 / 255)};{round(b * 100 / 255)}")
    weights = (1 << np.arange(6))[:, None]
    for top in range(0, h, 6):
        band = idx[top : top + 6]
        rows = []
        for n in np.unique(band):
            bits = ((band == n) * weights[: len(band)]).sum(axis=0)
            text = "".join(chr(63 + int(v)) for v in bits).rstrip("?")
            rows.append(f"#{n}{_runs(text)}")
        out.append("$".join(rows))
        out.append("-" if top + 6 < h else "")
    out.append(ST)
    return "".join(out)


def blocks(image: Image.Image) -> str:
    """Upper-half blocks, two pixel rows per text row, 24-bit colour; a colour code is written
    only where it changes along a row. An odd last row leaves the background unset."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    lines = []
    for y in range(0, h, 2):
        parts, fg, bg = [], None, None
        for x in range(w):
            top = tuple(rgb[y, x].tolist())
            bottom = tuple(rgb[y + 1, x].tolist()) if y + 1 < h else None
            if top != fg:
                parts.append(f"{ESC}[38;2;{top[0]};{top[1]};{top[2]}m")
                fg = top
            if bottom is not None and bottom != bg:
                parts.append(f"{ESC}[48;2;{bottom[0]};{bottom[1]};{bottom[2]}m")
                bg = bottom
            parts.append("▀")
        lines.append("".join(parts) + f"{ESC}[0m\n")
    return "".join(lines)


def grid(images: list[Image.Image], gap: int = 4) -> Image.Image:
    """Images side by side (up to 4 a row, then further rows) on a dark ground."""
    per_row = min(4, len(images))
    w = max(i.width for i in images)
    h = max(i.height for i in images)
    n_rows = math.ceil(len(images) / per_row)
    sheet = Image.new("RGB", (per_row * w + (per_row - 1) * gap, n_rows * h + (n_rows - 1) * gap))
    for k, im in enumerate(images):
        sheet.paste(im.convert("RGB"), ((k % per_row) * (w + gap), (k // per_row) * (h + gap)))
    return sheet
