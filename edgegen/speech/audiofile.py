"""Speech audio written in the format its file name says, streamed chunk by chunk.

WAV with the standard library; FLAC, MP3, M4A/AAC and Ogg/Opus with PyAV's FFmpeg (a
required dependency already, for the videos). Opus runs at 48 kHz, so the voice's audio is
resampled for it; the others keep the voice's rate.

    check_audio_path(Path("hello.mp3"))        # before any audio is made
    with open_audio(tmp, ".mp3", 22050) as write:
        write(samples)                          # float32 mono in [-1, 1]
"""

from __future__ import annotations

import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgegen.errors import UsageError

# extension → (container format, encoder, sample rate or None for the voice's own)
FORMATS: dict[str, tuple[str, str, int | None]] = {
    ".wav": ("wav", "pcm_s16le", None),
    ".flac": ("flac", "flac", None),
    ".mp3": ("mp3", "libmp3lame", None),
    ".m4a": ("ipod", "aac", None),
    ".aac": ("adts", "aac", None),
    ".ogg": ("ogg", "libopus", 48000),
    ".opus": ("ogg", "libopus", 48000),
}


def check_audio_path(path: Path) -> str:
    """The file's audio extension, or a UsageError naming the valid ones (and an encoder the
    bundled FFmpeg lacks)."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise UsageError(
            f"output {str(path)!r}: {ext or 'no extension'} is not an audio format edgegen "
            f"writes; use one of {', '.join(FORMATS)}"
        )
    from edgegen.fileio import check_writable

    check_writable(path)
    if ext != ".wav":
        import av

        try:
            av.codec.Codec(FORMATS[ext][1], "w")
        except Exception:
            raise UsageError(
                f"output {str(path)!r}: this FFmpeg build has no {FORMATS[ext][1]} encoder; "
                "write .wav or .flac instead"
            ) from None
    return ext


@contextmanager
def open_audio(path: Path, ext: str, sample_rate: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(samples)`` for float mono audio; the file is complete when the block
    ends. ``path`` is where to write (a temporary name); ``ext`` chooses the format."""
    if ext == ".wav":
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            yield lambda samples: wav.writeframes(_pcm16(samples).tobytes())
        return
    import av

    fmt, codec, rate = FORMATS[ext]
    rate = rate or sample_rate
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        if codec == "libmp3lame" or codec == "aac":
            stream.bit_rate = 96_000  # speech: transparent at a third of the music default
        ctx = stream.codec_context
        ctx.open()  # now it knows its frame size (AAC 1024, Opus 960, …)
        resampler = av.AudioResampler(format=ctx.format.name, layout="mono", rate=rate,
                                      frame_size=ctx.frame_size or None)  # fmt: skip

        def encode(frames) -> None:
            for f in frames:
                for packet in stream.encode(f):
                    container.mux(packet)

        def write(samples: np.ndarray) -> None:
            frame = av.AudioFrame.from_ndarray(
                _pcm16(samples)[None, :], format="s16", layout="mono"
            )
            frame.sample_rate = sample_rate
            encode(resampler.resample(frame))

        yield write
        encode(resampler.resample(None))
        for packet in stream.encode(None):
            container.mux(packet)


def _pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.asarray(samples, dtype=np.float32).clip(-1, 1) * 32767).astype("<i2")
