"""One encoder pass with PyAV: H.264 4:2:0 (BT.709, TV range, tagged), AAC 48 kHz stereo,
faststart MP4.

Frames arrive already as Y'CbCr planes (see kenburns.py), so the encoder never converts
colour; the tags written here must match the matrix in color.py. Frames are prepared on a
worker thread and handed over through a small bounded queue: memory stays flat in the video's
length, and preparation (Pillow and NumPy release the GIL) overlaps x264's own threads.
Audio is interleaved as the video advances so the muxer never buffers the whole track.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edgegen.errors import UsageError


@dataclass(frozen=True)
class EncodeSettings:
    crf: int = 20  # x264 constant quality: lower is better and bigger
    preset: str = "veryfast"  # x264 speed preset
    audio_bitrate: int = 192_000
    hardware: bool = False  # macOS: try h264_videotoolbox, fall back to libx264
    hardware_bitrate: int = 12_000_000  # VideoToolbox is bitrate-driven


# draft: fast previews; final: the measured quality/speed balance on a 2-core CPU
PRESETS = {
    "draft": EncodeSettings(crf=28, preset="ultrafast", audio_bitrate=128_000),
    "final": EncodeSettings(crf=20, preset="veryfast"),
}


def preset(name: str) -> EncodeSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(
            f"encode preset {name!r} unknown; choose one of {', '.join(PRESETS)}"
        ) from None


HARDWARE_CODEC = "h264_videotoolbox"


def hardware_available(width: int, height: int, fps: int) -> bool:
    """Whether VideoToolbox opens here (macOS with a PyAV build that has it).

    Probed on a throwaway codec context: a stream added to the container cannot be removed
    again if the hardware encoder then refused to open.
    """
    if sys.platform != "darwin":
        return False
    try:
        cc = av.CodecContext.create(HARDWARE_CODEC, "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
        cc.time_base = Fraction(1, fps)
        cc.open()
        return True
    except (av.FFmpegError, ValueError):  # unknown codec, or the session refused
        return False


def new_frame(width: int, height: int) -> tuple[av.VideoFrame, list[np.ndarray]]:
    """An empty yuv420p frame and writable NumPy views of its three planes (padding cut off)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        views.append(rows[:, : plane.width])
    return frame, views


class Encoder:
    """Write frames (and the whole soundtrack) to ``path``; call :meth:`close` to finish."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        settings: EncodeSettings,
        audio: np.ndarray | None = None,  # (n, 2) float32 at audio_rate
        audio_rate: int = 48_000,
    ):
        self.fps = fps
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.video = self._video_stream(width, height, fps, settings)
        self.codec = self.video.codec_context.name
        self.audio = audio
        self.audio_rate = audio_rate
        self.audio_pos = 0
        self.frames = 0
        if audio is not None:
            self.astream = self.container.add_stream("aac", rate=audio_rate)
            self.astream.codec_context.layout = "stereo"
            self.astream.bit_rate = settings.audio_bitrate

    def _video_stream(self, width: int, height: int, fps: int, s: EncodeSettings) -> av.VideoStream:
        if s.hardware and hardware_available(width, height, fps):
            stream = self.container.add_stream(HARDWARE_CODEC, rate=fps)
            self._configure(stream, width, height)
            stream.bit_rate = s.hardware_bitrate
            return stream
        stream = self.container.add_stream("libx264", rate=fps)
        self._configure(stream, width, height)
        stream.options = {"crf": str(s.crf), "preset": s.preset}
        return stream

    @staticmethod
    def _configure(stream: av.VideoStream, width: int, height: int) -> None:
        cc = stream.codec_context
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # the tags: BT.709 primaries, transfer and matrix, limited range (matches color.py)
        cc.color_primaries = 1
        cc.color_trc = 1
        cc.colorspace = 1
        cc.color_range = 1
        cc.time_base = Fraction(1, stream.average_rate or 1)

    def write(self, frame: av.VideoFrame) -> None:
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        frame.colorspace, frame.color_range = 1, 1
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self._audio_until(round(self.frames * self.audio_rate / self.fps))

    def _audio_until(self, sample: int, final: bool = False) -> None:
        if self.audio is None:
            return
        size = self.astream.codec_context.frame_size or 1024
        end = min(sample, len(self.audio))
        while self.audio_pos + size <= end or (final and self.audio_pos < end):
            chunk = self.audio[self.audio_pos : self.audio_pos + size]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk.T, dtype=np.float32), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = self.audio_rate, self.audio_pos
            frame.time_base = Fraction(1, self.audio_rate)
            for packet in self.astream.encode(frame):
                self.container.mux(packet)
            self.audio_pos += len(chunk)

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            self._audio_until(len(self.audio), final=True)
            for packet in self.astream.encode(None):
                self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except av.FFmpegError:
            pass  # the partial file is deleted by the caller's atomic_path anyway


_DONE = object()


def prefetch(items: Iterable, depth: int = 6) -> Iterator:
    """Run ``items`` on a worker thread, ``depth`` ahead of the consumer.

    Exceptions raised by the producer re-raise in the consumer; if the consumer stops early
    the worker is told to stop, so no thread outlives the render.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:
            put(e)

    worker = threading.Thread(target=work, name="edgegen-frames", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def encode(
    encoder: Encoder,
    frames: Iterable[av.VideoFrame],
    on_frame: Callable[[int], None] | None = None,
    depth: int = 6,
) -> int:
    """Encode every frame (prepared ``depth`` ahead on a thread); returns the frame count."""
    for frame in prefetch(frames, depth):
        encoder.write(frame)
        if on_frame is not None:
            on_frame(encoder.frames)
    return encoder.frames
