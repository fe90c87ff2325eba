"""A loaded voice: text -> audio with word timings, reusable across calls (weights stay warm).

1. ``normalize.clean`` drops unspoken text; ``normalize.spoken_tokens`` rewrites what espeak
   reads badly while keeping one display word per spoken token.
2. ``Phonemizer.sentences`` gives Piper's phonemes per sentence and each word's phoneme span.
3. Each sentence's ids run through :class:`~edgegen.models.vits.Vits`; the predicted duration
   of every id (in frames of ``hop_length`` samples) places each word in time.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgegen.device import on_gpu
from edgegen.errors import UsageError
from edgegen.speech.normalize import clean, split_tokens, spoken_tokens
from edgegen.speech.parallel import Helpers, Schedule, cpu_lanes
from edgegen.speech.phonemize import Phonemizer, Sentence
from edgegen.timings import Speech, Word

MAX_PHONEMES = 600  # a sentence longer than this is cut at a clause boundary
MAX_SPEED = 4.0
MIN_SPEED = 0.25


def check_options(speed: float, noise_scale: float | None, noise_w: float | None) -> None:
    """The range checks of a voice's options that need no voice (edgegen batch runs them
    before any voice loads)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise UsageError(f"speed {speed} is out of range; use {MIN_SPEED} to {MAX_SPEED}")
    for label, value in (("noise_scale", noise_scale), ("noise_w", noise_w)):
        if value is not None and not 0.0 <= value <= 2.0:
            raise UsageError(f"{label} {value} is out of range; use 0 to 2")


class Voice:
    def __init__(
        self,
        model,
        voice_config: dict[str, Any],
        name: str = "voice",
        source: tuple[str, str] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        # Where the weights came from (("artifact", dir) or ("onnx", path)): helper processes
        # load their own copy from there (see edgegen.speech.parallel).
        self.source = source
        self._helpers: Helpers | None = None
        self.sample_rate: int = model.config.sample_rate
        self.hop_length: int = model.config.hop_length
        self.id_map: dict[str, list[int]] = voice_config["phoneme_id_map"]
        inference = voice_config.get("inference", {})
        self.noise_scale = float(inference.get("noise_scale", 0.667))
        self.noise_w = float(inference.get("noise_w", 0.8))
        self.length_scale = float(inference.get("length_scale", 1.0))
        self.num_speakers = int(voice_config.get("num_speakers", 1))
        self.speaker_id_map: dict[str, int] = voice_config.get("speaker_id_map", {}) or {}
        self.phonemizer = Phonemizer(voice_config.get("espeak", {}).get("voice", "en-us"))

    # -- public API ---------------------------------------------------------------------------

    def speak(self, text: str, **options: Any) -> Speech:
        """The whole text as one :class:`Speech`; word times are from its start."""
        chunks = list(self.stream(text, **options))
        words: list[Word] = []
        offset = 0.0
        for chunk in chunks:
            words += [Word(w.word, w.start + offset, w.end + offset) for w in chunk.words]
            offset += chunk.duration
        audio = np.concatenate([c.audio for c in chunks]).astype(np.float32)
        return Speech(audio, self.sample_rate, words)

    def stream(
        self,
        text: str,
        *,
        speed: float = 1.0,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        speaker: int | None = None,
        seed: int | None = 0,
    ) -> Iterator[Speech]:
        """Sentence by sentence; each chunk's word times are relative to that chunk's start."""
        self._check(speed, speaker, noise_scale, noise_w)
        sentences, display = self._prepare(text)
        ns = self.noise_scale if noise_scale is None else noise_scale
        nw = self.noise_w if noise_w is None else noise_w
        prepared = [self._ids(sentence) for sentence in sentences]
        requests = [
            {
                "ids": ids,
                "noise_scale": ns,
                "length_scale": self.length_scale / speed,
                "noise_w": nw,
                "speaker": speaker,
                "seed": None if seed is None else seed + i,
            }
            for i, (ids, _) in enumerate(prepared)
        ]
        results = self._synthesize(requests)
        for sentence, (_, id_pos), (audio, frames) in zip(
            sentences, prepared, results, strict=True
        ):
            yield Speech(audio, self.sample_rate, self._words(sentence, id_pos, frames, display))

    def close(self) -> None:
        """Stop the helper processes, if any were started. They also stop when this voice is
        garbage-collected, and when this process ends. The voice stays usable (a later long
        text starts new helpers)."""
        if self._helpers is not None:
            self._helpers.close()
            self._helpers = None

    def __enter__(self) -> Voice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------------------------

    def _synthesize(self, requests: list[dict[str, Any]]) -> Iterator[tuple[Any, Any]]:
        """Each request through the model, in order; with helper processes when the text has
        several sentences and there are several cores to run them on (MLX on the CPU)."""
        helpers = self._helpers_for(len(requests))
        if helpers is None:
            for r in requests:
                yield self.model.synthesize(**r)
            return
        import mlx.core as mx

        from edgegen import _blas

        # Weights loaded lazily (mx.load) are read once here, not by every task.
        mx.eval(self.model.parameters())
        with _blas.single_threaded():  # the lanes are the parallelism
            try:
                yield from Schedule(self.model, helpers, requests).run()
            finally:
                # Closed early (Ctrl-C, an error): let queued work finish single-threaded
                # before BLAS gets its threads back. Otherwise a GEMM still running could
                # wake OpenBLAS's pool just as the process exits, and its shutdown can then
                # hang (seen: main thread in blas_thread_shutdown_, a worker never woken).
                mx.synchronize()

    def _helpers_for(self, sentences: int) -> Helpers | None:
        if self._helpers is not None:
            return self._helpers
        if sentences < 2 or self.source is None or cpu_lanes() < 2:
            return None

        if on_gpu():  # one GPU stream is already the whole device
            return None
        try:
            self._helpers = Helpers(self.source, cpu_lanes() - 1)
        except (OSError, ValueError):  # no pipes or subprocesses here: one process it is
            self.source = None
            return None
        weakref.finalize(self, self._helpers.close)  # not bound to self: no cycle
        return self._helpers

    def _check(self, speed: float, speaker: int | None, ns: float | None, nw: float | None):
        check_options(speed, ns, nw)
        if speaker is not None and not 0 <= speaker < max(self.num_speakers, 1):
            raise UsageError(
                f"speaker {speaker} does not exist; voice {self.name!r} has speakers "
                f"0..{max(self.num_speakers, 1) - 1}"
            )

    def _prepare(self, text: str) -> tuple[list[Sentence], list[str]]:
        if not isinstance(text, str) or not text.strip():
            raise UsageError("text is empty; give some words to speak")
        spoken, display = spoken_tokens(clean(text))
        sentences = [
            s
            for s in self.phonemizer.sentences(spoken, MAX_PHONEMES)
            if any(p in self.id_map and p not in " ^$_" for p in s.phonemes)
        ]
        if not sentences:
            raise UsageError(
                f"text {text[:40]!r} has nothing this voice can speak (only symbols, emoji or "
                f"characters outside its language)"
            )
        # Display words only when tokens line up one to one (they do unless a clause boundary
        # fell inside a token).
        if len(split_tokens(spoken)) != len(display):
            display = []
        return sentences, display

    def _ids(self, sentence: Sentence) -> tuple[list[int], list[int]]:
        """Piper's framing: ^ _ (phoneme _)* $; ``id_pos[k]`` = index of phoneme k's id."""
        pad = self.id_map["_"]
        ids = [*self.id_map["^"], *pad]
        id_pos = []
        for ph in sentence.phonemes:
            id_pos.append(len(ids))
            if ph in self.id_map:  # Piper skips unknown phonemes too
                ids += [*self.id_map[ph], *pad]
        ids += self.id_map["$"]
        return ids, id_pos

    def _words(
        self, sentence: Sentence, id_pos: list[int], frames: np.ndarray, display: list[str]
    ) -> list[Word]:
        sec_per_frame = self.hop_length / self.sample_rate
        edges = np.concatenate([[0], np.cumsum(frames)]) * sec_per_frame
        n_ids = len(frames)
        words = []
        for text, a, b, index in sentence.words:
            if b <= a:
                continue
            # A phoneme owns its id and the pad after it (Piper's alignment convention).
            first = id_pos[a]
            last = id_pos[b - 1] if b - 1 < len(id_pos) else n_ids - 1
            end_id = min(last + 2, n_ids)
            label = display[index] if display and index < len(display) else text
            words.append(Word(label, float(edges[first]), float(edges[end_id])))
        return words
