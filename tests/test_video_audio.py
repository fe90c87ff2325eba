"""Soundtrack: resampling, loudness (BS.1770), ducking envelope, music loading, mix."""

import numpy as np
import pytest
from video_support import band_level, db, sine, write_wav

from edgegen.errors import InputFileError
from edgegen.video import audio

RATE = audio.RATE


def test_resampling_keeps_length_timing_and_level():
    rate = 22050
    x = np.zeros(rate, np.float32)
    x[11025] = 1.0  # an impulse at 0.5 s
    y = audio.to_stereo_48k(x, rate)
    assert y.shape == (48000, 2)
    assert abs(int(np.abs(y[:, 0]).argmax()) - 24000) <= 2  # no delay introduced
    tone = audio.to_stereo_48k(sine(1000, 1.0, rate), rate)
    rms = np.sqrt((tone[4800:-4800, 0] ** 2).mean())
    assert db(rms / (0.3 / np.sqrt(2))) == pytest.approx(0, abs=0.1)
    assert np.allclose(tone[:, 0], tone[:, 1])


def test_loudness_matches_bs1770_reference_point():
    # BS.1770-4: a 0 dBFS 997 Hz sine in one front channel reads -3.01 LKFS
    left = sine(997, 5.0, amp=1.0)
    x = np.stack([left, np.zeros_like(left)], axis=1)
    assert audio.loudness(x) == pytest.approx(-3.01, abs=0.05)
    # -20 dB is 20 LU quieter; silence is gated away
    assert audio.loudness(x * 0.1) == pytest.approx(-23.01, abs=0.05)
    assert audio.loudness(np.zeros((RATE, 2), np.float32)) == -np.inf


def test_normalize_hits_target_or_the_peak_ceiling():
    x = np.stack([sine(440, 3.0, amp=0.05)] * 2, axis=1)
    y = audio.normalize(x, target=-20.0)
    assert audio.loudness(y) == pytest.approx(-20.0, abs=0.05)
    loud = audio.normalize(x, target=0.0)  # would clip: peak-limited instead
    assert db(np.abs(loud).max()) == pytest.approx(audio.PEAK_CEILING_DB, abs=0.01)


def test_duck_envelope_is_down_during_speech_and_ramps_outside_it():
    n = 4 * RATE
    g = audio.duck_envelope(n, [(1.0, 2.0)], depth_db=-12.0, ramp=0.25)
    assert db(g[int(1.0 * RATE)]) == pytest.approx(-12.0, abs=1e-3)  # fully down at the onset
    assert db(g[int(1.99 * RATE)]) == pytest.approx(-12.0, abs=1e-3)
    assert g[int(0.5 * RATE)] == pytest.approx(1.0)
    assert g[int(2.5 * RATE)] == pytest.approx(1.0)
    assert db(g[int(0.875 * RATE)]) == pytest.approx(-6.0, abs=0.01)  # half-way down the ramp
    assert np.all(np.abs(np.diff(db(g))) < 12.0 / (0.25 * RATE) * 1.01)  # no steps
    assert np.all(audio.duck_envelope(100, []) == 1.0)


def test_speech_intervals_merge_short_gaps():
    spans = [(0.0, 0.5), (0.6, 1.0), (3.0, 3.5)]
    assert audio.speech_intervals(spans, merge_gap=0.3) == [(0.0, 1.0), (3.0, 3.5)]


def test_load_music_decodes_and_resamples(tmp_path):
    path = tmp_path / "bed.wav"
    write_wav(path, np.stack([sine(300, 2.0, 44100)] * 2, axis=1), 44100)
    music = audio.load_music(path)
    assert music.shape[1] == 2 and abs(len(music) - 2 * RATE) <= 2 * 1024
    with pytest.raises(InputFileError, match="music: file not found"):
        audio.load_music(tmp_path / "missing.mp3")
    (tmp_path / "junk.mp3").write_bytes(b"not audio at all" * 10)
    with pytest.raises(InputFileError, match="junk.mp3: music: cannot decode"):
        audio.load_music(tmp_path / "junk.mp3")


def test_mix_ducks_music_at_least_9_db_under_speech():
    n = 6 * RATE
    voice = np.zeros((n, 2), np.float32)
    voice[2 * RATE : 4 * RATE] = sine(440, 2.0)[:, None]
    music = np.stack([sine(3000, 2.5)] * 2, axis=1)  # shorter than the voice: it loops
    out = audio.mix(voice, [(2.0, 4.0)], music, fade_out=0.5)
    under = band_level(out[int(2.5 * RATE) : int(3.5 * RATE), 0], 3000)
    gap = band_level(out[int(0.7 * RATE) : int(1.7 * RATE), 0], 3000)
    assert gap - under >= 9.0
    assert audio.loudness(out) == pytest.approx(audio.TARGET_LUFS, abs=0.5)
    assert np.abs(out[-10:]).max() < 0.05  # music faded out at the end
