"""espeak-ng phonemization that reproduces Piper's, plus which phonemes belong to which word.

The library comes from the ``espeakng-loader`` wheel (libespeak-ng + its data, on macOS and
Linux, no system package). Piper 1.8 calls a patched ``espeak_TextToPhonemesWithTerminator``
that reports each clause's punctuation; the stock library only has ``espeak_TextToPhonemes``.
It does advance the text pointer clause by clause, so the punctuation that ended a clause is
read from the consumed source text instead (table below, measured against piper-tts). espeak
reads one character ahead, so each consumed span ends with the next clause's first character.

Piper's rules kept here: ``(lang)`` switch flags are removed; the clause's punctuation is
appended (``, : ;`` followed by a space); phonemes are NFD code points; a sentence ends at
``. ? !`` (and at a blank line or the end of the text).
"""

from __future__ import annotations

import ctypes
import difflib
import re
import threading
import unicodedata
from dataclasses import dataclass, field

from edgegen.errors import ModelError
from edgegen.speech.normalize import split_tokens

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_LANG_FLAG = re.compile(r"\([^)]+\)")
_STRESS = set("ˈˌ")
# Clause-final punctuation -> (terminator Piper appends, ends a sentence). Measured with
# piper-tts 1.8's bridge; anything else ends a clause silently.
_TERMINATORS = {".": (".", True), "?": ("?", True), "!": ("!", True), ",": (",", False),
                ":": (":", False), ";": (";", False), "—": (";", False), "–": (";", False),
                "…": ("", False), "¡": ("", False), "¿": ("", False), "、": ("", False),
                "，": ("", False), "：": ("", False), "；": ("", False), "。": ("", True),
                "！": ("", True), "．": ("", True), "？": ("", True)}  # fmt: skip
_CLOSERS = set("\"'”’»)]}")

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_VOICE: str | None = None


def _library(voice: str) -> ctypes.CDLL:
    """Load and initialize libespeak-ng once per process; select ``voice``."""
    global _LIB, _VOICE
    if _LIB is None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise ModelError(
                "the espeakng-loader package is missing; reinstall edgegen (pip install -e .)"
            ) from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        data = espeakng_loader.get_data_path().encode()
        if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0) <= 0:
            raise ModelError(f"espeak-ng failed to initialize with data {data.decode()!r}")
        _LIB = lib
    if voice != _VOICE:
        if _LIB.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ModelError(f"espeak-ng has no voice {voice!r}")
        _VOICE = voice
    return _LIB


@dataclass
class Clause:
    phonemes: str  # IPA, language flags removed, no terminator
    text: str  # the source text of this clause
    terminator: str  # "", ".", "?", "!", ",", ":" or ";"
    end_of_sentence: bool


def _raw_clauses(lib: ctypes.CDLL, text: str) -> list[Clause]:
    data = text.encode("utf-8")
    buf = ctypes.create_string_buffer(data)
    base = ctypes.addressof(buf)
    ptr = ctypes.c_void_p(base)
    spans: list[tuple[str, int, int]] = []
    while ptr.value:
        start = ptr.value - base
        out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
        end = ptr.value - base if ptr.value else len(data)
        spans.append(((out or b"").decode("utf-8", errors="replace"), start, end))
    clauses = []
    for i, (ph, start, end) in enumerate(spans):
        last = i == len(spans) - 1
        # Move the one-character lookahead from the end of this span to the next clause.
        if start > 0:
            start = _char_start(data, start - 1)
        if not last:
            end = _char_start(data, end - 1)
        src = data[start:end].decode("utf-8", errors="replace")
        term, eos = _terminator(src)
        if not term and not eos:
            eos = last or bool(re.search(r"\n\s*\n\s*$", src))
        clauses.append(Clause(_LANG_FLAG.sub("", ph), src, term, eos or last))
    return clauses


def _char_start(data: bytes, pos: int) -> int:
    while pos > 0 and (data[pos] & 0xC0) == 0x80:
        pos -= 1
    return pos


def _terminator(src: str) -> tuple[str, bool]:
    s = src.rstrip()
    while s and s[-1] in _CLOSERS:
        s = s[:-1].rstrip()
    run = len(s)
    while run > 0 and (s[run - 1] in _TERMINATORS or s[run - 1] == "."):
        run -= 1
    tail = s[run:]
    if not tail:
        return "", False
    if tail.startswith(".."):
        return _TERMINATORS["…"]
    return _TERMINATORS[tail[0]]


@dataclass
class Sentence:
    """One synthesis unit: Piper's phoneme list plus the phoneme span of every word."""

    phonemes: list[str] = field(default_factory=list)
    # (token text, first phoneme, end phoneme, index of the token among all text tokens)
    words: list[tuple[str, int, int, int]] = field(default_factory=list)


class Phonemizer:
    """Text -> sentences of phonemes for one espeak voice (``en-us`` for joe)."""

    def __init__(self, voice: str) -> None:
        self.voice = voice

    def clauses(self, text: str) -> list[Clause]:
        with _LOCK:
            return _raw_clauses(_library(self.voice), text)

    def word_phonemes(self, word: str) -> str:
        with _LOCK:
            clauses = _raw_clauses(_library(self.voice), word)
        return " ".join(c.phonemes for c in clauses if c.phonemes)

    def sentences(self, text: str, max_phonemes: int = 0) -> list[Sentence]:
        """Piper's sentences; with ``max_phonemes`` a longer sentence is also cut at a clause
        boundary (bounds memory and latency for text without sentence punctuation)."""
        out: list[Sentence] = []
        current = Sentence()
        n_tokens = 0
        for clause in self.clauses(text):
            base = len(current.phonemes)
            ph = unicodedata.normalize("NFD", clause.phonemes)
            for w, a, b, i in self._align(clause.text, ph):
                current.words.append((w, base + a, base + b, n_tokens + i))
            n_tokens += len(split_tokens(clause.text))
            suffix = clause.terminator + (" " if clause.terminator in (",", ":", ";") else "")
            current.phonemes += list(ph + unicodedata.normalize("NFD", suffix))
            too_long = max_phonemes and len(current.phonemes) >= max_phonemes
            if clause.end_of_sentence or too_long:
                if current.phonemes:
                    out.append(current)
                current = Sentence()
        if current.phonemes:
            out.append(current)
        return out

    def _align(self, text: str, ph: str) -> list[tuple[str, int, int, int]]:
        """Phoneme span [start, end) in ``ph`` of every spoken whitespace token of ``text``.

        Each token is phonemized alone and the concatenation is aligned to the clause's
        phonemes character by character (stress marks and spaces ignored), which survives
        espeak joining words ("in the" -> "ɪnðə") and expanding numbers ("42" -> two words).
        """
        tokens = []
        for index, tok in enumerate(split_tokens(text)):
            iso = [c for c in unicodedata.normalize("NFD", self.word_phonemes(tok))
                   if c not in _STRESS and not c.isspace()]  # fmt: skip
            if iso:
                tokens.append((tok, iso, index))
        keep = [i for i, c in enumerate(ph) if c not in _STRESS and not c.isspace()]
        if not tokens or not keep:
            return []
        target = [ph[i] for i in keep]
        source = [c for _, iso, _ in tokens for c in iso]
        to_target = _position_map(source, target)
        words = []
        pos = 0
        for tok, iso, index in tokens:
            a = to_target[pos]
            b = max(to_target[pos + len(iso)], a + 1)
            pos += len(iso)
            start = keep[min(a, len(keep) - 1)]
            end = keep[min(b, len(keep)) - 1] + 1
            # A stress mark just before the word's first phoneme belongs to the word.
            while start > 0 and ph[start - 1] in _STRESS:
                start -= 1
            words.append((tok, start, end, index))
        # Spans must not overlap or run backwards: clamp each start to the previous end.
        fixed = []
        prev_end = 0
        for tok, a, b, index in words:
            a = max(a, prev_end)
            b = max(b, a)
            fixed.append((tok, a, b, index))
            prev_end = b
        return fixed


def _position_map(source: list[str], target: list[str]) -> list[int]:
    """For each boundary 0..len(source), the matching boundary in ``target`` (monotonic)."""
    m = difflib.SequenceMatcher(None, source, target, autojunk=False)
    out = [0] * (len(source) + 1)
    anchors = [(0, 0)]
    for a, b, size in m.get_matching_blocks():
        if size:
            anchors.append((a, b))
            anchors.append((a + size, b + size))
    anchors.append((len(source), len(target)))
    anchors.sort()
    j = 0
    for i in range(len(source) + 1):
        while j + 1 < len(anchors) and anchors[j + 1][0] <= i:
            j += 1
        a0, b0 = anchors[j]
        if j + 1 < len(anchors) and anchors[j + 1][0] > a0:
            a1, b1 = anchors[j + 1]
            out[i] = b0 + round((i - a0) * (b1 - b0) / (a1 - a0))
        else:
            out[i] = b0
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1])
    return out
