"""Support shared by the video tests (not collected: the name has no ``test_`` prefix).

Fakes for the image model and the voice, a sine generator, a WAV writer, a single-band level
meter and an SRT parser.
"""

from __future__ import annotations

import av
import numpy as np
from PIL import Image, ImageDraw

from edgegen.timings import Speech, Word
from edgegen.video.audio import RATE


class FakeImages:
    """Draws a seed-dependent gradient with a sun and a hill; counts every call."""

    name = "fake-model"

    def __init__(self, size=(144, 256), fail_on: str | None = None):
        self.native_size = size
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on

    def generate(self, prompt, negative, seed, width, height):
        self.calls.append((prompt, seed))
        if self.fail_on and self.fail_on in prompt:
            raise RuntimeError("the model ran out of memory")
        rng = np.random.default_rng(seed)
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, height)[:, None, None]
        arr = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        cx, cy, r = width * rng.uniform(0.3, 0.7), height * 0.35, width * 0.12
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 220, 90))
        d.polygon([(0, height), (width / 2, height * 0.6), (width, height)], fill=(30, 90, 40))
        return img


class FakeSpeaker:
    """One 440 Hz tone per word: 0.05 s per character + 0.1 s, 0.12 s of silence between."""

    def __init__(self, sample_rate: int = 22050, tone: float = 440.0):
        self.sample_rate = sample_rate
        self.tone = tone
        self.calls: list[str] = []

    def speak(self, text, *, speed=1.0):
        self.calls.append(text)
        sr, t, words, chunks = self.sample_rate, 0.0, [], []
        for w in text.split():
            dur = (0.05 * len(w) + 0.1) / speed
            n = round(dur * sr)
            x = np.arange(n) / sr
            chunks.append(0.3 * np.sin(2 * np.pi * self.tone * x))
            words.append(Word(w, t, t + n / sr))
            gap = round(0.12 * sr)
            chunks.append(np.zeros(gap))
            t += (n + gap) / sr
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return Speech(audio, sr, words)


def sine(freq: float, seconds: float, rate: int = 48000, amp: float = 0.3) -> np.ndarray:
    x = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * x)).astype(np.float32)


def db(x: float) -> float:
    return 20 * np.log10(x)


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        s.codec_context.layout = "stereo"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def band_level(x: np.ndarray, freq: float) -> float:
    """Amplitude of ``freq`` in ``x`` (a Hann-windowed DFT bin at the 48 kHz mix rate), in dB."""
    w = np.hanning(len(x))
    c = np.abs(np.sum(x * w * np.exp(-2j * np.pi * freq * np.arange(len(x)) / RATE)))
    return db(2 * c / w.sum() + 1e-12)


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def sec(s: str) -> float:
        h, m, rest = s.split(":")
        secs, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(secs) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        a, b = lines[1].split(" --> ")
        cues.append((sec(a), sec(b), " ".join(lines[2:])))
    return cues
