"""Captions: pagination by pauses/sentences/measured width, highlight, safe area, fallback."""

import numpy as np
import pytest

from edgegen.timings import Word
from edgegen.video.captions import HIGHLIGHT, Captioner, CaptionStyle, Fonts


def timed(text: str, start: float = 0.0, each: float = 0.3, gap: float = 0.05) -> list[Word]:
    out, t = [], start
    for w in text.split():
        out.append(Word(w, t, t + each))
        t += each + gap
    return out


def test_pages_break_at_sentences_pauses_and_length():
    cap = Captioner(540, 960)
    words = timed("The sun rises. Over the quiet sea the boats begin to move and drift away")
    late = Word("slowly", words[-1].end + 1.0, words[-1].end + 1.3)  # after a 1 s pause
    pages = cap.paginate([*words, late])
    texts = [p.text for p in pages]
    assert texts[0] == "The sun rises."
    assert texts[-1] == "slowly"
    assert " ".join(texts) == " ".join(w.word for w in [*words, late])
    for p in pages:
        assert len(p.text) <= cap.style.max_chars or len(p.words) == 1
        assert len(cap._lines([w.word for w in p.words])) <= cap.style.max_lines
    for a, b in zip(pages, pages[1:], strict=False):
        assert a.hide <= b.show  # never two pages at once
    # cues are exactly the word timings
    assert (
        pages[1].cue.start == pages[1].words[0].start and pages[1].cue.end == pages[1].words[-1].end
    )


def test_pages_end_with_their_scene():
    cap = Captioner(540, 960)
    pages = cap.paginate(timed("Hello there"), until=0.6)
    assert pages[-1].hide == pytest.approx(0.65)  # the last word's end wins over `until`
    pages = cap.paginate(timed("Hello there"), until=0.8)
    assert pages[-1].hide == pytest.approx(0.8)


def test_active_word_is_highlighted_inside_the_safe_area():
    w, h = 540, 960
    cap = Captioner(w, h, CaptionStyle())
    page = cap.paginate(timed("Every word lights up in turn"))[0]
    plain = np.asarray(cap.draw(page, None))
    lit = np.asarray(cap.draw(page, 2))

    def yellow(a):
        rgb = a[..., :3].astype(int)
        return (np.abs(rgb - HIGHLIGHT).sum(-1) < 30) & (a[..., 3] > 250)

    assert not yellow(plain).any()
    ys, xs = np.nonzero(yellow(lit))
    assert len(xs) > 50
    # the highlighted word is the third: right of the first word's column start
    ink = np.nonzero(plain[..., 3] > 128)
    assert xs.min() > ink[1].min()
    # everything drawn stays within the safe area (stroke and shadow included)
    assert ink[1].min() >= w * cap.style.left - cap.stroke * 4
    assert ink[1].max() <= w * (1 - cap.style.right) + cap.stroke * 4
    assert ink[0].max() <= h * (1 - cap.style.bottom)


def test_long_words_wrap_by_measured_width():
    cap = Captioner(360, 640)
    lines = cap._lines("incomprehensibilities notwithstanding extraordinarily".split())
    assert len(lines) >= 2
    for line in lines:
        if len(line) > 1:
            assert cap.fonts.width(" ".join(line)) <= cap.max_width


def test_state_tracks_the_spoken_word():
    cap = Captioner(360, 640)
    words = timed("one two three")
    pages = cap.paginate(words)
    assert cap.state_at(pages, -0.1) is None
    _, _, active = cap.state_at(pages, words[1].start + 0.01)
    assert active == 1
    _, _, active = cap.state_at(pages, words[1].end + 0.01)  # between words: stays on "two"
    assert active == 1
    assert cap.state_at(pages, 10.0) is None


def test_glyph_coverage_fallback():
    fonts = Fonts(32)
    default = fonts.faces[-1]  # Pillow's own face, always present
    assert fonts._has(len(fonts.faces) - 1, "A")
    assert not fonts._has(len(fonts.faces) - 1, "日")
    face = fonts.face_for("日本")
    has_cjk = any(all(fonts._has(i, c) for c in "日本") for i in range(len(fonts.faces)))
    if has_cjk:
        assert face is not default and not fonts.missing
    else:  # no CJK font on this machine: reported, never silently dropped
        assert {"日", "本"} <= fonts.missing
    assert fonts.face_for("Hello") is fonts.faces[0]


def test_overlay_blends_only_where_drawn():
    from edgegen.video.encode import new_frame

    cap = Captioner(360, 640)
    page = cap.paginate(timed("Hi there"))[0]
    ov = cap.overlay(page, 0)
    _, views = new_frame(360, 640)
    for v in views:
        v[...] = 100
    ov.apply(views)
    y = views[0]
    assert y.max() > 200 and y.min() < 60  # white text, black outline
    assert (y[:100] == 100).all()  # nothing above the caption block
