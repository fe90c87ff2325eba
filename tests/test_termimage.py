"""The terminal image encoders, each checked byte for byte against its protocol's
specification on tiny images, and the protocol detection."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from edgegen.cli import termimage
from edgegen.errors import UsageError

ESC = "\x1b"
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def image_of(rows: list[list[tuple[int, int, int]]]) -> Image.Image:
    return Image.fromarray(np.array(rows, dtype=np.uint8))


def png(image: Image.Image) -> bytes:
    return termimage.png_bytes(image)


# --- kitty graphics protocol ------------------------------------------------------------


def test_kitty_small_image_is_one_chunk_with_all_keys():
    im = image_of([[RED, BLUE], [GREEN, RED]])
    b64 = base64.standard_b64encode(png(im)).decode()
    assert termimage.kitty(im, 3, 2) == f"{ESC}_Ga=T,f=100,q=2,c=3,r=2,m=0;{b64}{ESC}\\"


def test_kitty_chunks_are_at_most_4096_and_only_the_first_has_keys():
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # ~12 KB of PNG
    out = termimage.kitty(im, 10, 5)
    chunks = re.findall(rf"{ESC}_G([^;]*);([^{ESC}]*){ESC}\\", out)
    assert "".join(f"{ESC}_G{k};{p}{ESC}\\" for k, p in chunks) == out  # nothing in between
    assert len(chunks) >= 3
    keys = [k for k, _ in chunks]
    assert keys[0] == "a=T,f=100,q=2,c=10,r=5,m=1"
    assert keys[1:-1] == ["m=1"] * (len(chunks) - 2)
    assert keys[-1] == "m=0"
    payloads = [p for _, p in chunks]
    assert all(len(p) == 4096 for p in payloads[:-1]) and 0 < len(payloads[-1]) <= 4096
    assert base64.standard_b64decode("".join(payloads)) == png(im)


def test_tmux_passthrough_doubles_every_escape():
    im = image_of([[RED]])
    inner = termimage.kitty(im, 1, 1)
    wrapped = termimage.encode(im, "kitty", (1, 1), tmux=True)
    assert wrapped == f"{ESC}Ptmux;{inner.replace(ESC, ESC + ESC)}{ESC}\\\n"


# --- iTerm2 inline images -----------------------------------------------------------------


def test_iterm_inline_image():
    im = image_of([[RED, BLUE]])
    data = png(im)
    b64 = base64.standard_b64encode(data).decode()
    expected = (
        f"{ESC}]1337;File=inline=1;size={len(data)};width=4;height=2;preserveAspectRatio=1:{b64}\a"
    )
    assert termimage.iterm(im, 4, 2) == expected
    assert Image.open(io.BytesIO(base64.b64decode(b64))).getpixel((1, 0)) == BLUE


# --- Sixel ------------------------------------------------------------------------------


def test_sixel_two_bands_two_colours():
    # 3 wide, 7 tall: column 0 red, column 1 red over blue (rows 0-2 / 3-6), column 2 blue.
    rows = [[RED, RED if y < 3 else BLUE, BLUE] for y in range(7)]
    expected = (
        f'{ESC}Pq"1;1;3;7'
        "#0;2;100;0;0#1;2;0;0;100"  # registers in percent, in order of first appearance
        "#0~F$#1?w~"  # band 1: red 0b111111, 0b000111; blue -, 0b111000, 0b111111
        "-"
        "#0@$#1?@@"  # band 2 (one row): bit 0 only
        f"{ESC}\\"
    )
    assert termimage.sixel(image_of(rows)) == expected


def test_sixel_repeats_runs_and_drops_trailing_empty_sixels():
    rows = [[GREEN] * 6 + [RED] * 2]
    expected = f'{ESC}Pq"1;1;8;1#0;2;0;100;0#1;2;100;0;0#0!6@$#1!6?@@{ESC}\\'
    assert termimage.sixel(image_of(rows)) == expected


def test_sixel_quantizes_beyond_256_colours():
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (12, 40, 3), dtype=np.uint8))  # 480 colours
    out = termimage.sixel(im)
    registers = re.findall(r"#(\d+);2;(\d+);(\d+);(\d+)", out)
    assert 1 < len(registers) <= 256
    assert all(0 <= int(c) <= 100 for r in registers for c in r[1:])
    assert out.count("-") == 1  # two bands of six rows


# --- Half blocks ------------------------------------------------------------------------


def test_blocks_exact_output_with_odd_last_row():
    im = image_of([[RED, RED], [BLUE, GREEN], [GREEN, GREEN]])
    expected = (
        f"{ESC}[38;2;255;0;0m{ESC}[48;2;0;0;255m▀{ESC}[48;2;0;255;0m▀{ESC}[0m\n"
        f"{ESC}[38;2;0;255;0m▀▀{ESC}[0m\n"
    )
    assert termimage.blocks(im) == expected


def test_blocks_colours_match_the_image():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    out = termimage.blocks(Image.fromarray(pixels))
    for y, line in enumerate(out.splitlines()):
        fg = bg = None
        cells = []
        for m in re.finditer(r"\x1b\[(38|48);2;(\d+);(\d+);(\d+)m|▀", line):
            if m.group(0) == "▀":
                cells.append((fg, bg))
            elif m.group(1) == "38":
                fg = tuple(int(v) for v in m.groups()[1:])
            else:
                bg = tuple(int(v) for v in m.groups()[1:])
        assert [c[0] for c in cells] == [tuple(p) for p in pixels[2 * y].tolist()]
        assert [c[1] for c in cells] == [tuple(p) for p in pixels[2 * y + 1].tolist()]


def test_encode_sizes_each_protocol_to_the_cells():
    im = Image.new("RGB", (128, 256), RED)
    assert termimage.encode(im, "none", (4, 4)) == ""
    blocks = termimage.encode(im, "blocks", (8, 8))
    assert blocks.count("\n") == 8 and blocks.splitlines()[0].count("▀") == 8
    sixel = termimage.encode(im, "sixel", (2, 3), cell=(10, 20))
    assert sixel.startswith(f'{ESC}Pq"1;1;20;60')
    with pytest.raises(UsageError, match="'bogus' is unknown"):
        termimage.encode(im, "bogus", (1, 1))


def test_fit_cells_keeps_aspect_and_box():
    assert termimage.fit_cells((128, 256), (40, 30), (10, 20)) == (13, 13)  # native size
    assert termimage.fit_cells((128, 256), (40, 30), (10, 20), max_scale=2) == (26, 26)
    assert termimage.fit_cells((1024, 1024), (40, 30), (10, 20)) == (40, 20)  # width-bound
    assert termimage.fit_cells((128, 256), (40, 30), (1, 2)) == (30, 30)  # blocks, height-bound


def test_grid_places_images_side_by_side():
    sheet = termimage.grid([Image.new("RGB", (8, 16), c) for c in (RED, GREEN, BLUE)], gap=2)
    assert sheet.size == (3 * 8 + 2 * 2, 16)
    assert sheet.getpixel((0, 0)) == RED and sheet.getpixel((10, 0)) == GREEN
    assert sheet.getpixel((27, 15)) == BLUE and sheet.getpixel((8, 0)) == (0, 0, 0)


# --- Detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
        ({"TERM": "xterm-ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "vscode"}, "iterm"),
        ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, "iterm"),  # over ssh
        ({"TERM": "foot"}, "sixel"),
        ({"TERM": "xterm-256color", "WT_SESSION": "x"}, "sixel"),
        ({"TERM": "screen-256color", "TMUX": "/tmp/t,1,0"}, "blocks"),
        ({"TERM": "tmux-256color", "TMUX": "/tmp/t,1,0", "KITTY_WINDOW_ID": "2"}, "kitty"),
        ({"TERM": "xterm-256color"}, "blocks"),
        ({"TERM": "dumb"}, "none"),
        ({"TERM": "xterm-kitty", "EDGEGEN_IMAGE_PROTOCOL": "sixel"}, "sixel"),
        ({"EDGEGEN_IMAGE_PROTOCOL": "BLOCKS"}, "blocks"),
    ],
)
def test_detect(env, expected):
    assert termimage.detect(env, tty=True) == expected


def test_detect_off_a_terminal_is_none_unless_forced():
    assert termimage.detect({"TERM": "xterm-kitty"}, tty=False) == "none"
    assert termimage.detect({"EDGEGEN_IMAGE_PROTOCOL": "kitty"}, tty=False) == "kitty"


def test_detect_refuses_an_unknown_forced_protocol():
    with pytest.raises(UsageError, match="EDGEGEN_IMAGE_PROTOCOL='jpeg'.*kitty, iterm, sixel"):
        termimage.detect({"EDGEGEN_IMAGE_PROTOCOL": "jpeg"}, tty=True)
