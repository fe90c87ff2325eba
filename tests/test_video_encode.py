"""Encoder: streaming with a bounded prefetch thread, hardware fallback, interleaved audio."""

import threading
import time

import av
import numpy as np
import pytest

from edgegen.errors import UsageError
from edgegen.video.encode import (
    Encoder,
    EncodeSettings,
    encode,
    hardware_available,
    new_frame,
    prefetch,
    preset,
)


def test_prefetch_is_bounded_and_ordered():
    made = []

    def items():
        for i in range(50):
            made.append(i)
            yield i

    got = []
    for x in prefetch(items(), depth=4):
        time.sleep(0.001)
        got.append(x)
        assert len(made) - len(got) <= 4 + 2  # the queue, plus one in hand on each side
    assert got == list(range(50))


def test_prefetch_reraises_and_stops_its_thread():
    def failing():
        yield 1
        raise RuntimeError("frame 2 failed")

    with pytest.raises(RuntimeError, match="frame 2 failed"):
        list(prefetch(failing()))

    gen = prefetch(iter(range(10_000)), depth=2)
    assert next(gen) == 0
    gen.close()  # the consumer stops early: the worker must not linger
    assert not any(t.name == "edgegen-frames" for t in threading.enumerate())


def test_hardware_request_falls_back_to_x264_where_unavailable(tmp_path):
    settings = EncodeSettings(crf=30, preset="ultrafast", hardware=True)
    enc = Encoder(tmp_path / "a.mp4", 64, 64, 10, settings)
    expected = "h264_videotoolbox" if hardware_available(64, 64, 10) else "libx264"
    assert enc.codec == expected
    frame, views = new_frame(64, 64)
    for v in views:
        v[...] = 128
    encode(enc, [frame])
    enc.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert c.streams.video[0].frames == 1


def test_audio_is_interleaved_with_video(tmp_path):
    fps, seconds = 10, 3
    audio = np.zeros((48000 * seconds, 2), np.float32)
    enc = Encoder(tmp_path / "b.mp4", 64, 64, fps, preset("draft"), audio)

    def frames():
        for i in range(fps * seconds):
            frame, views = new_frame(64, 64)
            for v in views:
                v[...] = i
            yield frame

    assert encode(enc, frames()) == fps * seconds
    enc.close()
    with av.open(str(tmp_path / "b.mp4")) as c:
        kinds = [p.stream.type for p in c.demux() if p.size]
    first_audio, last_video = kinds.index("audio"), len(kinds) - 1 - kinds[::-1].index("video")
    assert first_audio < last_video  # not all video first, then all audio
    with pytest.raises(UsageError, match="choose one of draft, final"):
        preset("best")
