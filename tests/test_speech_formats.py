"""``speak -o`` writes the format its extension names (issue 18: ``hello.mp3`` used to hold
WAV bytes), or refuses the extension before any audio is made."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from edgegen.errors import UsageError
from edgegen.speech import load_voice, speak_to_file
from edgegen.speech.audiofile import FORMATS, check_audio_path

TEXT = "Hello there. It is 5 past 9."
# extension → (container as FFmpeg's demuxer names it, codec as its decoder names it)
EXPECTED = {
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "mp3float"),
    ".m4a": ("mov,mp4,m4a,3gp,3g2,mj2", "aac"),
    ".aac": ("aac", "aac"),
    ".ogg": ("ogg", "opus"),
    ".opus": ("ogg", "opus"),
}


def decode(path) -> tuple[str, str, int, np.ndarray]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(s)])
        return c.format.name, s.codec_context.name, s.rate, samples


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    voice = load_voice(None)
    out = tmp_path_factory.mktemp("formats")
    results = {ext: speak_to_file(voice, TEXT, out / f"hello{ext}", seed=0) for ext in FORMATS}
    voice.close()
    return out, results


def test_every_extension_holds_its_format(spoken):
    out, results = spoken
    assert set(EXPECTED) == set(FORMATS)
    _, _, rate, reference = decode(out / "hello.wav")
    seconds = len(reference) / rate
    for ext, (container, codec) in EXPECTED.items():
        got_container, got_codec, got_rate, samples = decode(out / f"hello{ext}")
        assert (got_container, got_codec) == (container, codec), ext
        assert results[ext][0] == pytest.approx(seconds)
        assert len(samples) / got_rate == pytest.approx(seconds, abs=0.06), ext  # codec priming
        assert got_rate == (48000 if codec == "opus" else rate)
    assert (out / "hello.mp3").read_bytes()[:4] != b"RIFF"


def test_flac_is_lossless(spoken):
    out, _ = spoken
    *_, wav = decode(out / "hello.wav")
    *_, flac = decode(out / "hello.flac")
    assert np.array_equal(wav, flac)


def test_lossy_formats_keep_the_speech(spoken):
    out, _ = spoken
    *_, wav = decode(out / "hello.wav")
    wav = wav.astype(np.float32) / 32768
    for ext in (".mp3", ".m4a"):
        *_, lossy = decode(out / f"hello{ext}")
        lossy = lossy.astype(np.float32)
        # the encoders' delay shifts the samples: compare at the best alignment
        best = max(
            np.corrcoef(wav[: len(wav) - 3000], lossy[lag : lag + len(wav) - 3000])[0, 1]
            for lag in range(0, 2200, 1)
            if lag + len(wav) - 3000 <= len(lossy)
        )
        assert best > 0.95, (ext, best)


def test_unknown_extension_is_refused_before_any_audio(tmp_path):
    with pytest.raises(UsageError, match=r"\.xyz is not an audio format.*\.wav, \.flac, \.mp3"):
        check_audio_path(tmp_path / "hello.xyz")
    r = subprocess.run(
        [sys.executable, "-m", "edgegen", "speak", "hello", "-o", str(tmp_path / "hello.mp4")],
        capture_output=True,
        text=True,
    )
    assert (
        r.returncode == 2
        and r.stderr.count("\n") == 1
        and ".mp4 is not an audio format" in r.stderr
    )
    assert list(tmp_path.iterdir()) == []
