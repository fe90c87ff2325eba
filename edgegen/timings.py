"""Word timings: the contract between speech (which produces them) and video (captions).

A :class:`Speech` is mono float32 audio plus the time span of every spoken word, in seconds
from the start of that audio. Writers for ``.srt``, ``.vtt`` and ``.json`` live here so the
``speak`` command and the ``render`` command emit identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.errors import UsageError


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class Speech:
    audio: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int
    words: list[Word] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: list[Word]) -> str:
    """One cue per entry (a word or a caption page); times as ``HH:MM:SS,mmm``."""
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.word}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: list[Word]) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.word}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(words: list[Word]) -> str:
    data = {"words": [{"word": w.word, "start": w.start, "end": w.end} for w in words]}
    return json.dumps(data, ensure_ascii=False, indent=1)


WRITERS = {".srt": to_srt, ".vtt": to_vtt, ".json": to_json}


def check_timings_path(path: Path) -> Path:
    """``path`` if its extension names a timings format; else a one-line UsageError."""
    if path.suffix.lower() not in WRITERS:
        raise UsageError(
            f"timings file {str(path)!r} has extension {path.suffix!r}; "
            f"use one of {', '.join(WRITERS)}"
        )
    return path


def write_timings(path: Path, words: list[Word]) -> None:
    """Write ``words`` in the format named by ``path``'s extension, atomically."""
    writer = WRITERS[check_timings_path(path).suffix.lower()]
    from edgegen.fileio import atomic_write_text

    atomic_write_text(path, writer(words))
