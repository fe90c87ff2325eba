"""End-to-end renders with fakes for the image model and the voice, decoded back with PyAV."""

import re
from pathlib import Path

import av
import numpy as np
import pytest
from video_support import FakeImages, FakeSpeaker, band_level, parse_srt, sine, write_wav

from edgegen.errors import InputFileError, UsageError
from edgegen.video import render as render_mod
from edgegen.video.render import LEAD, TAIL, render

SCRIPT = (
    "# Test\n\nThe sun rises over the sea.\n[visual: a sunrise]\n\n"
    "Mountains stand tall and quiet.\n\nThe city sleeps under the stars.\n"
)


def script(tmp_path: Path, text: str = SCRIPT, name: str = "story.md") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray() for f in c.decode(audio=0)]  # fltp: (2, n) each
    return np.concatenate(chunks, axis=1)[0]


def test_full_size_render_matches_the_acceptance_list(tmp_path):
    music = tmp_path / "bed.wav"
    write_wav(music, np.stack([sine(3000, 3.0, 44100)] * 2, axis=1), 44100)
    speaker, images = FakeSpeaker(), FakeImages()
    out = tmp_path / "out" / "video.mp4"
    events = []
    report = render(
        script(tmp_path),
        out,
        images=images,
        speaker=speaker,
        music=music,
        fps=12,
        progress=events.append,
    )
    assert out.is_file() and report.path == out and report.bytes == out.stat().st_size
    assert {e.stage for e in events} == {"speech", "images", "audio", "frames", "subtitles"}

    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        cc = v.codec_context
        assert (v.width, v.height, v.average_rate, cc.pix_fmt) == (1080, 1920, 12, "yuv420p")
        assert v.codec_context.name == "h264"
        # BT.709 primaries/transfer/matrix (1) and limited range (1 = MPEG/TV)
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (1, 1, 1, 1)
        assert (a.codec_context.name, a.rate, a.channels) == ("aac", 48000, 2)
        n_frames = sum(1 for _ in c.decode(video=0))
    samples = decode_audio(out)
    assert n_frames == report.frames
    assert abs(n_frames / 12 - report.duration) <= 1 / 12
    assert abs(len(samples) / 48000 - report.duration) <= 1 / 12
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (
        b"mdat" not in head or head.find(b"moov") < head.find(b"mdat")
    )

    # scenes last exactly their speech + padding: the audio is the clock
    spoken = [speaker.speak(s.split("\n[")[0]) for s in SCRIPT.split("\n\n")[1:]]
    for scene, speech in zip(report.scenes, spoken, strict=True):
        assert scene.end - scene.start == pytest.approx(LEAD + speech.duration + TAIL, abs=1e-4)

    # subtitles: page cues equal the spoken words' times on the video's timeline
    cues = parse_srt(out.with_suffix(".srt").read_text())
    words = [
        (scene.start + LEAD + w.start, scene.start + LEAD + w.end, w.word)
        for scene, speech in zip(report.scenes, spoken, strict=True)
        for w in speech.words
    ]
    assert " ".join(c[2] for c in cues) == " ".join(w[2] for w in words)
    i = 0
    for start, end, text in cues:
        n = len(text.split())
        assert start == pytest.approx(words[i][0], abs=0.0011)
        assert end == pytest.approx(words[i + n - 1][1], abs=0.0011)
        i += n
    assert out.with_suffix(".vtt").read_text().startswith("WEBVTT")

    # music is >= 9 dB quieter under speech than in the gaps between scenes
    rate = 48000
    under, gaps = [], []
    for k, speech in enumerate(spoken):
        s0 = report.scenes[k].start + LEAD
        under.append(
            band_level(
                samples[int((s0 + 0.1) * rate) : int((s0 + speech.duration - 0.3) * rate)], 3000
            )
        )
        if k + 1 < len(spoken):
            gap_start = s0 + speech.words[-1].end + 0.27  # past the release ramp
            gap_end = report.scenes[k + 1].start + LEAD - 0.27  # before the next attack ramp
            gaps.append(band_level(samples[int(gap_start * rate) : int(gap_end * rate)], 3000))
    assert min(gaps) - max(under) >= 9.0


def test_editing_one_scene_regenerates_exactly_one_image(tmp_path):
    images = FakeImages()
    kwargs = dict(images=images, speaker=FakeSpeaker(), fps=5, size=(144, 256))
    first = render(script(tmp_path), tmp_path / "a.mp4", **kwargs)
    assert first.generated == 3 and first.cache_hits == 0 and len(images.calls) == 3

    again = render(script(tmp_path), tmp_path / "a.mp4", **kwargs)
    assert again.generated == 0 and again.cache_hits == 3 and len(images.calls) == 3

    edited = SCRIPT.replace("Mountains stand tall", "Mountains stand proud")
    third = render(script(tmp_path, edited), tmp_path / "a.mp4", **kwargs)
    assert third.generated == 1 and third.cache_hits == 2 and len(images.calls) == 4
    assert "Mountains stand proud" in images.calls[-1][0]


def test_a_failing_scene_image_becomes_a_marked_card_and_is_reported(tmp_path):
    images = FakeImages(fail_on="Mountains")
    report = render(
        script(tmp_path),
        tmp_path / "v.mp4",
        images=images,
        speaker=FakeSpeaker(),
        fps=5,
        size=(144, 256),
    )
    assert report.failed == [1]
    assert "out of memory" in report.scenes[1].error
    assert sum("Mountains" in p for p, _ in images.calls) == 2  # tried, retried, gave up
    assert (tmp_path / "v.mp4").is_file()
    # the failure is not cached: the next render tries again
    render(
        script(tmp_path),
        tmp_path / "v.mp4",
        images=images,
        speaker=FakeSpeaker(),
        fps=5,
        size=(144, 256),
    )
    assert sum("Mountains" in p for p, _ in images.calls) == 4


class SolidImages(FakeImages):
    def generate(self, prompt, negative, seed, width, height):
        from PIL import Image

        self.calls.append((prompt, seed))
        return Image.new("RGB", (width, height), (200, 60, 30))


def test_colours_survive_the_bt709_round_trip(tmp_path):
    out = tmp_path / "c.mp4"
    render(
        script(tmp_path),
        out,
        images=SolidImages(),
        speaker=FakeSpeaker(),
        fps=5,
        size=(144, 256),
        captions=False,
    )
    with av.open(str(out)) as c:
        frame = next(iter(c.decode(video=0)))
        rgb = frame.reformat(
            format="rgb24", src_colorspace="ITU709", src_color_range="MPEG"
        ).to_ndarray()
    assert np.abs(rgb[128, 72].astype(int) - (200, 60, 30)).max() <= 6
    assert out.with_suffix(".srt").is_file()  # subtitles are written even without burn-in


@pytest.mark.parametrize(
    "text, kwargs, error, pattern",
    [
        ("\n\n", {}, InputFileError, r"story.md: no narration found"),
        (
            SCRIPT,
            {"style": "oil-paint"},
            UsageError,
            r"style 'oil-paint' is unknown; choose one of",
        ),
        (
            SCRIPT,
            {"music": Path("no-such.mp3")},
            InputFileError,
            r"no-such.mp3: music: file not found",
        ),
        (SCRIPT, {"size": (1080, 1921)}, InputFileError, r"story.md: size: 1080x1921 is invalid"),
        (
            'style = "x"\n[[scenes]]\nnarration = "a"\n',
            {},
            InputFileError,
            r"story.toml:1: style: 'x'",
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_mp4(tmp_path, text, kwargs, error, pattern):
    name = "story.toml" if "[[scenes]]" in text else "story.md"
    out = tmp_path / "out.mp4"
    with pytest.raises(error) as e:
        render(
            script(tmp_path, text, name), out, images=FakeImages(), speaker=FakeSpeaker(), **kwargs
        )
    assert "\n" not in str(e.value) and re.search(pattern, str(e.value))
    assert not any(p.suffix in (".mp4", ".srt", ".vtt") for p in tmp_path.iterdir())


def test_a_crash_mid_encode_leaves_no_partial_file(tmp_path, monkeypatch):
    class Boom(render_mod.KenBurns):
        def __init__(self, image, *a, **k):
            if image.width == 3:
                raise RuntimeError("boom")
            super().__init__(image, *a, **k)

    class OnePixelThird(FakeImages):
        def generate(self, prompt, negative, seed, width, height):
            img = super().generate(prompt, negative, seed, width, height)
            return img.resize((3, 4)) if "city" in prompt else img

    monkeypatch.setattr(render_mod, "KenBurns", Boom)
    with pytest.raises(RuntimeError, match="boom"):
        render(
            script(tmp_path),
            tmp_path / "x.mp4",
            images=OnePixelThird(),
            speaker=FakeSpeaker(),
            fps=5,
            size=(144, 256),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story.md"]


def test_only_edgegens_style_terms_may_be_dropped_silently():
    from edgegen.video import prompts

    subject = "sunrise over a calm sea, small boats"
    prompt = prompts.build_prompt(subject, "cinematic")
    tail = prompt[len(subject) :]
    # A short-context model cut into the style terms only (decoded with the tokenizer's spacing).
    dropped = tail[len(tail) // 2 :].replace(",", " , ")
    assert prompts.only_style_dropped(prompt, dropped, subject, None)
    # Any of the scene's own words lost is worth a warning.
    assert not prompts.only_style_dropped(prompt, "boats" + tail, subject, None)
    assert not prompts.only_style_dropped("other text", "text", subject, None)


def test_render_passes_on_truncation_of_script_words_only(tmp_path):
    """A short-context model cutting edgegen's own style terms (or its negative prompt) is
    silent; cutting the script's words is a warning."""
    import warnings

    from edgegen.params import PromptTruncatedWarning

    class TruncatingImages(FakeImages):
        def generate(self, prompt, negative, seed, width, height):
            cut = prompt[-20:] if "Mountains" not in prompt else prompt[8:]
            for text, dropped in ((prompt, cut), (negative, negative[-10:])):
                warnings.warn(
                    PromptTruncatedWarning(f"dropped {dropped!r}", text, dropped), stacklevel=2
                )
            return super().generate(prompt, negative, seed, width, height)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render(
            script(tmp_path), tmp_path / "a.mp4", images=TruncatingImages(),
            speaker=FakeSpeaker(), fps=5, size=(144, 256),
        )  # fmt: skip
    cut = [w for w in caught if issubclass(w.category, PromptTruncatedWarning)]
    assert len(cut) == 1 and "Mountains" in cut[0].message.prompt


def test_music_that_does_not_decode_fails_before_any_scene_is_spoken(tmp_path):
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
    speaker, images = FakeSpeaker(), FakeImages()
    with pytest.raises(InputFileError, match=r"broken.mp3: music: "):
        render(script(tmp_path), tmp_path / "out.mp4", images=images, speaker=speaker, music=broken)
    assert speaker.calls == [] and images.calls == []  # no heavy stage ran
    assert not (tmp_path / "out.mp4").exists()
