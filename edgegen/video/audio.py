"""The soundtrack: voice + optional music, ducked under speech, faded, loudness-normalized.

Everything is float32 at 48 kHz (the rate AAC in MP4 is expected at). Resampling uses
libswresample through PyAV — a windowed-sinc polyphase resampler, already bundled, so no
extra dependency — for both the voice (Piper voices speak at 22.05 kHz) and the music file
(any format FFmpeg decodes).

Ducking needs no analysis: we know exactly when words are spoken, so the music gain is an
envelope built from those intervals (-12 dB, with ramps that finish *before* a word starts).
Loudness follows ITU-R BS.1770-4 (K-weighting, 400 ms blocks, absolute and relative gates).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from edgegen.errors import InputFileError

RATE = 48_000
DUCK_DB = -12.0  # music under speech
DUCK_RAMP = 0.25  # s: the gain moves over this long, entirely outside the speech
MUSIC_BED_LU = -8.0  # music in the gaps sits this far below the voice's loudness
TARGET_LUFS = -14.0  # what Shorts/TikTok/Reels normalize to
PEAK_CEILING_DB = -1.0  # sample peak after normalization


def _resampler(layout: str = "stereo") -> av.AudioResampler:
    return av.AudioResampler(format="flt", layout=layout, rate=RATE)


def _drain(
    resampler: av.AudioResampler, frame: av.AudioFrame | None, channels: int = 2
) -> list[np.ndarray]:
    # packed "flt" gives one (1, channels * n) row, interleaved
    return [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(frame)]


def to_stereo_48k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono ``(n,)`` or ``(n, channels)`` float audio -> ``(round(n * 48000 / rate), 2)``."""
    x = np.asarray(audio, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    n_out = round(len(x) * RATE / rate)
    if rate == RATE:
        out = x if x.shape[1] == 2 else np.repeat(x[:, :1], 2, axis=1)
        return np.ascontiguousarray(out[:, :2], dtype=np.float32)
    # mono stays mono through the resampler and is then copied to both channels at full
    # level (swresample's own mono->stereo upmix would pan it down by 3 dB)
    channels = min(2, x.shape[1])
    layout = "mono" if channels == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(x[:, :channels].T), format="fltp", layout=layout
    )
    frame.sample_rate = rate
    frame.pts = 0
    r = _resampler(layout)
    chunks = _drain(r, frame, channels) + _drain(r, None, channels)
    out = np.concatenate(chunks) if chunks else np.zeros((0, channels), np.float32)
    if channels == 1:
        out = np.repeat(out, 2, axis=1)
    # the resampler's own rounding may leave a sample or two either way: pin the length,
    # because sample counts are the video's clock
    if len(out) < n_out:
        out = np.concatenate([out, np.zeros((n_out - len(out), 2), np.float32)])
    return out[:n_out]


def load_music(path: Path) -> np.ndarray:
    """Decode any audio file FFmpeg reads -> ``(n, 2)`` float32 at 48 kHz."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputFileError(f"{path}: music: the file has no audio stream")
            r = _resampler()
            chunks: list[np.ndarray] = []
            for frame in container.decode(audio=0):
                frame.pts = None
                chunks += _drain(r, frame)
            chunks += _drain(r, None)
    except FileNotFoundError as e:
        raise InputFileError(f"{path}: music: file not found") from e
    except av.FFmpegError as e:
        raise InputFileError(f"{path}: music: cannot decode audio ({e})") from e
    if not chunks:
        raise InputFileError(f"{path}: music: the file decodes to no samples")
    return np.concatenate(chunks)


def speech_intervals(
    spans: Sequence[tuple[float, float]], merge_gap: float = 2 * DUCK_RAMP
) -> list[tuple[float, float]]:
    """Merge word spans closer than ``merge_gap`` so the music does not pump between words."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] < merge_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def duck_envelope(
    n: int,
    intervals: Sequence[tuple[float, float]],
    depth_db: float = DUCK_DB,
    ramp: float = DUCK_RAMP,
) -> np.ndarray:
    """Linear gain ``(n,)``: ``depth_db`` inside the intervals, 0 dB a ``ramp`` away from them.

    The gain in dB falls linearly with the distance to the nearest interval, so it is fully
    down when a word starts and only rises after the last word ends.
    """
    mask = np.zeros(n, dtype=bool)
    for a, b in intervals:
        mask[max(0, int(a * RATE)) : min(n, int(np.ceil(b * RATE)))] = True
    if not mask.any():
        return np.ones(n, dtype=np.float32)
    idx = np.arange(n)
    last = np.maximum.accumulate(np.where(mask, idx, -(10**12)))  # latest masked index <= i
    nxt = np.minimum.accumulate(np.where(mask, idx, 10**12)[::-1])[::-1]  # next masked >= i
    dist = np.minimum(idx - last, nxt - idx) / RATE
    db = depth_db * np.clip(1.0 - dist / ramp, 0.0, 1.0)
    return (10.0 ** (db / 20.0)).astype(np.float32)


def fade(n: int, fade_in: float, fade_out: float) -> np.ndarray:
    g = np.ones(n, dtype=np.float32)
    a, b = min(n, int(fade_in * RATE)), min(n, int(fade_out * RATE))
    if a:
        g[:a] = np.linspace(0.0, 1.0, a, dtype=np.float32)
    if b:
        g[n - b :] *= np.linspace(1.0, 0.0, b, dtype=np.float32)
    return g


# --- loudness (ITU-R BS.1770-4) --------------------------------------------------------------

# K-weighting at 48 kHz, the coefficients printed in the recommendation (Table 1 and 2)
_SHELF = (
    [1.53512485958697, -2.69169618940638, 1.19839281085285],
    [1.0, -1.69065929318241, 0.73248077421585],
)
_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


@functools.cache
def _k_weighting_amplitude(n_fft: int) -> np.ndarray:
    """|H(f)| of the two K-weighting biquads on the rfft grid of ``n_fft`` points."""
    w = np.pi * np.arange(n_fft // 2 + 1) / (n_fft // 2)
    cos1, cos2 = np.cos(w), np.cos(2 * w)

    def power(c: list[float]) -> np.ndarray:  # |c0 + c1 e^-jw + c2 e^-2jw|^2, in reals
        return (
            c[0] ** 2
            + c[1] ** 2
            + c[2] ** 2
            + 2 * (c[0] * c[1] + c[1] * c[2]) * cos1
            + 2 * c[0] * c[2] * cos2
        )

    h2 = np.ones_like(w)
    for b, a in (_SHELF, _HIGHPASS):
        h2 *= power(b) / power(a)
    return np.sqrt(np.maximum(h2, 0.0)).astype(np.float32)  # rounding can dip below 0 at DC


def loudness(x: np.ndarray) -> float:
    """Integrated loudness in LUFS of ``(n, channels)`` float audio at 48 kHz.

    The filter is applied as its power response in the frequency domain (one FFT): block
    energies depend only on the power spectrum, and this is far faster than a Python IIR.
    """
    x = x[:, None] if x.ndim == 1 else x
    block, step = int(0.4 * RATE), int(0.1 * RATE)  # 400 ms blocks, 75 % overlap
    n = max(len(x), block)
    n_fft = 1 << int(np.ceil(np.log2(n)))
    gain = _k_weighting_amplitude(n_fft)
    power = np.zeros(n // step - 3)
    for channel in x.T:  # one contiguous 1-D FFT per channel: several times faster than axis=0
        weighted = np.fft.irfft(np.fft.rfft(channel, n=n_fft) * gain, n=n_fft)[:n]
        # mean square per block = sum of its four 100 ms sub-blocks
        sub = (
            np.square(weighted[: n // step * step]).reshape(-1, step).sum(axis=1, dtype=np.float64)
        )
        power += (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / block
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(power)
    keep = lk > -70.0
    if not keep.any():
        return -np.inf
    relative = -0.691 + 10 * np.log10(power[keep].mean()) - 10.0
    keep &= lk > relative
    return float(-0.691 + 10 * np.log10(power[keep].mean()))


def normalize(
    x: np.ndarray, target: float = TARGET_LUFS, ceiling_db: float = PEAK_CEILING_DB
) -> np.ndarray:
    """Gain to ``target`` LUFS, reduced if needed so no sample peaks above ``ceiling_db``."""
    level = loudness(x)
    if not np.isfinite(level):
        return x
    gain_db = target - level
    peak = float(np.abs(x).max())
    if peak > 0:
        gain_db = min(gain_db, ceiling_db - 20 * np.log10(peak))
    return (x * 10 ** (gain_db / 20)).astype(np.float32)


def mix(
    voice: np.ndarray,
    spans: Sequence[tuple[float, float]],
    music: np.ndarray | None = None,
    *,
    fade_out: float = 1.5,
) -> np.ndarray:
    """Voice ``(n, 2)`` + music looped/trimmed to n, ducked under ``spans`` (seconds)."""
    n = len(voice)
    out = voice.astype(np.float32, copy=True)
    if music is not None and len(music):
        bed = np.resize(music, (n, 2)) if len(music) < n else music[:n]
        voice_level, music_level = loudness(voice), loudness(bed)
        if np.isfinite(music_level):
            ref = voice_level if np.isfinite(voice_level) else TARGET_LUFS
            bed = bed * 10 ** ((ref + MUSIC_BED_LU - music_level) / 20)
            gain = duck_envelope(n, speech_intervals(spans)) * fade(n, 0.3, fade_out)
            out += bed * gain[:, None]
    return normalize(out)
