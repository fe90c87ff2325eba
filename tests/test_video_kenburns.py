"""Ken Burns: sub-pixel, smooth, eased motion; colour conversion; cross-dissolve."""

import numpy as np
import pytest
from PIL import Image

from edgegen.video.color import rgb_to_yuv
from edgegen.video.kenburns import (
    BACKENDS,
    MOVES,
    KenBurns,
    Motion,
    auto_move,
    blend,
    canvas_size,
    ease,
    translate,
)


def bar_image(width: int, height: int, centre: float) -> Image.Image:
    """A soft vertical bar (Gaussian, sigma 2.5 px) on black whose centre wobbles by up to
    half a pixel from row to row (mean: ``centre``), so that 8-bit rounding errors average out
    and the column profile's centroid is good to about a hundredth of a pixel."""
    x = np.arange(width) + 0.5
    wobble = (np.arange(height) * 0.618034) % 1.0 - 0.5
    wobble -= wobble.mean()
    rows = 230 * np.exp(-0.5 * ((x[None, :] - centre - wobble[:, None]) / 2.5) ** 2)
    return Image.fromarray(np.rint(rows)[..., None].repeat(3, 2).astype(np.uint8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pan_moves_by_sub_pixel_steps_and_tracks_the_float_window(backend):
    w, h, fps, seconds = 360, 640, 30, 2.0
    motion = Motion("pan-right", zoom=1.15)
    cw, ch = KenBurns(bar_image(16, 16, 8), w, h, motion).canvas
    centre = 200.37
    kb = KenBurns(bar_image(cw, ch, centre), w, h, motion, backend=backend)
    n = int(fps * seconds)
    ts = [i / (n - 1) for i in range(n)]
    x0 = np.array([kb.window(t)[0] for t in ts])
    seen = []
    for t in ts:
        profile = kb.frame(t)[0].astype(np.float64).mean(axis=0) - 16.0  # luma of black is 16
        pos = np.arange(w) + 0.5
        seen.append(centre - (profile * pos).sum() / profile.sum())  # window edge from centroid
    seen = np.array(seen)
    # the picture follows the exact float window; integer stepping would be off by up to 0.5 px
    assert np.abs(seen - x0).max() < 0.02

    steps = np.diff(seen)
    assert steps.max() > 1.0  # it really moves ...
    fractional = np.abs(steps - np.rint(steps))
    assert (fractional > 0.05).mean() > 0.8  # ... by non-integer amounts
    # smooth: every frame-to-frame step is the eased motion's own step, no stair-steps
    assert np.abs(steps - np.diff(x0)).max() < 0.03
    # eased: at rest at both ends, fastest in the middle
    assert steps[0] < 0.05 and steps[-1] < 0.05
    assert abs(int(steps.argmax()) - n // 2) <= 3


@pytest.mark.parametrize("move", MOVES)
def test_every_move_stays_inside_the_canvas_and_keeps_the_aspect(move):
    m = Motion(move, zoom=1.2)
    w, h = 360, 640
    cw, ch = canvas_size(w, h, m.zoom)
    assert (cw - w) % 4 == 0 and (ch - h) % 4 == 0 and cw >= w * 1.2 and ch >= h * 1.2
    for t in np.linspace(0, 1, 11):
        x0, y0, x1, y1 = m.window(t, cw, ch, w, h)
        assert -1e-9 <= x0 < x1 <= cw + 1e-9 and -1e-9 <= y0 < y1 <= ch + 1e-9
        assert (x1 - x0) / (y1 - y0) == pytest.approx(w / h)
    start, end = m.window(0, cw, ch, w, h), m.window(1, cw, ch, w, h)
    assert start != end


def test_zoom_in_ends_one_to_one_and_auto_moves_vary():
    x0, y0, x1, y1 = Motion("zoom-in", zoom=1.25).window(1.0, 1352, 2400, 1080, 1920)
    assert (x1 - x0, y1 - y0) == pytest.approx((1080, 1920))
    assert ease(0) == 0 and ease(1) == 1 and ease(0.5) == pytest.approx(0.5)
    assert all(auto_move(i) != auto_move(i + 1) for i in range(16))


@pytest.mark.parametrize("offset", [(0.0, 3.0), (2.25, 3.0), (7.5, 1.0), (4.0, 0.625), (1.3, 2.7)])
def test_translate_is_bilinear_at_fractional_offsets(offset):
    rng = np.random.default_rng(1)
    plane = np.asarray(
        Image.fromarray(rng.integers(0, 256, (20, 12), dtype=np.uint8)).resize(
            (120, 200), Image.BICUBIC
        )
    )
    x0, y0 = offset
    ours = translate(plane, x0, y0, 100, 180).astype(int)
    ref = np.asarray(
        Image.fromarray(plane).resize((100, 180), Image.BILINEAR, box=(x0, y0, x0 + 100, y0 + 180))
    ).astype(int)
    assert np.abs(ours - ref).max() <= 2 and np.abs(ours - ref).mean() < 0.6


def test_frame_planes_have_420_shapes():
    kb = KenBurns(Image.new("RGB", (90, 160), (10, 200, 30)), 180, 320, Motion("zoom-out"))
    y, u, v = kb.frame(0.3)
    assert y.shape == (320, 180) and u.shape == v.shape == (160, 90)


def test_bt709_limited_range_matrix():
    rgb = np.array([[[255, 255, 255], [0, 0, 0]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    y, u, v = rgb_to_yuv(rgb.repeat(2, 0).repeat(2, 1))
    assert y[0, 0] == 235 and y[0, 2] == 16  # white, black
    assert y[2, 0] == round(16 + 219 * 0.2126)  # red: BT.709 weight, not BT.601's 0.299
    assert y[2, 2] == round(16 + 219 * 0.0722)
    assert u[0, 0] == v[0, 0] == 128 and v[1, 0] == 240 and u[1, 1] == 240


def test_blend_is_a_linear_dissolve():
    a = tuple(np.full((4, 4), 0, np.uint8) for _ in range(3))
    b = tuple(np.full((4, 4), 200, np.uint8) for _ in range(3))
    assert blend(a, b, 0.0)[0][0, 0] == 0
    assert blend(a, b, 1.0)[0][0, 0] == 200
    assert blend(a, b, 0.25)[0][0, 0] == 50


@pytest.mark.skipif(len(BACKENDS) < 2, reason="OpenCV is not installed")
@pytest.mark.parametrize("move", MOVES)
def test_opencv_and_pillow_resample_the_same_window(move):
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (32, 18, 3), dtype=np.uint8))
    img = small.resize((180, 320), Image.BICUBIC)  # smooth content: bilinear variants agree
    frames = [
        KenBurns(img, 180, 320, Motion(move), backend=b).frame(0.37) for b in ("pillow", "opencv")
    ]
    for p, c in zip(*frames, strict=True):
        assert np.abs(p.astype(int) - c.astype(int)).mean() < 0.8  # a 0.25 px offset gives > 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("move", MOVES)
def test_frames_drawn_into_frame_buffers_equal_returned_frames(backend, move):
    from edgegen.video.encode import new_frame

    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 36, 3), dtype=np.uint8))
    kb = KenBurns(img, 180, 320, Motion(move), backend=backend)
    for t in (0.0, 0.41, 1.0):
        _, views = new_frame(180, 320)
        kb.frame(t, views)
        for got, want in zip(views, kb.frame(t), strict=True):
            assert np.array_equal(got, want)
    _, views = new_frame(180, 320)
    a, b = kb.frame(0.2), kb.frame(0.8)
    blend(a, b, 0.3, views)
    assert all(np.array_equal(v, m) for v, m in zip(views, blend(a, b, 0.3), strict=True))
