"""Text normalization before phonemization.

Two stages, so captions keep the words as written:

1. ``clean``: remove what is not spoken — Markdown marks, URLs, emoji and other pictographs,
   control characters. Removed text has no word timing, so it cannot break timing.
2. ``spoken_tokens``: rewrite single whitespace-separated tokens that espeak-ng reads badly
   (years, decades, ranges, a few abbreviations and units). A rewrite joins its words with
   NO-BREAK SPACE, which espeak reads as a space but ``split_tokens`` does not split on, so
   every spoken token still lines up with one display token.

Everything espeak already reads well (cardinals, ordinals, money, times, percentages,
"Dr.", "e.g.") is left to espeak, so the phoneme ids stay identical to Piper's.
"""

from __future__ import annotations

import re
import unicodedata

NBSP = "\u00a0"
_WS = re.compile(r"([ \t\n\r\f\v]+)")

_MD_RULES = [
    (re.compile(r"^[ \t]*```[^\n]*$", re.M), ""),  # code fences
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> link text
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.M), ""),  # headings
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.M), ""),  # list bullets
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"(\*\*|__|~~|\*|`)"), ""),  # emphasis and code marks
    (re.compile(r"(?<!\w)_(\S[^_]*)_(?!\w)"), r"\1"),  # _emphasis_
    (re.compile(r"\|"), " "),  # table cells
]
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+", re.I)
_KEEP_SYMBOLS = set("°©®™§¶")

_MONTHS = {"jan": "January", "feb": "February", "mar": "March", "apr": "April", "jun": "June",
           "jul": "July", "aug": "August", "sep": "September", "sept": "September",
           "oct": "October", "nov": "November", "dec": "December"}  # fmt: skip
_ABBREV = {"vs": "versus", "approx": "approximately"}
_ABBREV_NEEDS_DOT = {"vs": False, "approx": True}
_UNITS = {"km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters",
          "mph": "miles per hour", "km/h": "kilometers per hour", "kWh": "kilowatt hours",
          "°C": "degrees Celsius", "°F": "degrees Fahrenheit", "ms": "milliseconds"}  # fmt: skip
_DECADES = {"2": "twenties", "3": "thirties", "4": "forties", "5": "fifties", "6": "sixties",
            "7": "seventies", "8": "eighties", "9": "nineties"}  # fmt: skip
_TOKEN = re.compile(r"^(?P<pre>[\"'“‘(\[]*)(?P<core>.*?)(?P<post>[\"'”’)\].,!?;:]*)$")


def clean(text: str) -> str:
    """Drop unspoken text: Markdown marks, URLs, emoji/pictographs, control characters."""
    text = unicodedata.normalize("NFC", text)
    for rx, repl in _MD_RULES:
        text = rx.sub(repl, text)
    text = _URL.sub("", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t":
            out.append(ch)
        elif cat in ("So", "Sk", "Cs", "Co", "Cn", "Cf", "Cc", "Mn") and ch not in _KEEP_SYMBOLS:
            # Cf covers zero-width joiners and variation selectors inside emoji sequences;
            # Mn only strips combining marks left orphaned after a removed base (NFC keeps
            # accented letters composed).
            if cat == "Mn" and out and out[-1] not in " \n\t":
                out.append(ch)
            continue
        else:
            out.append(ch)
    return re.sub(r"[ \t]{2,}", " ", "".join(out)).strip()


def split_tokens(text: str) -> list[str]:
    """Whitespace tokens (ASCII whitespace only, so NBSP-joined rewrites stay one token)."""
    return [t for t in _WS.split(text) if t and not _WS.fullmatch(t)]


def _year(digits: str) -> str | None:
    n = int(digits)
    if not (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return None
    hi, lo = digits[:2], digits[2:]
    if lo == "00":
        return f"{hi}{NBSP}hundred"
    if lo.startswith("0"):
        return f"{hi}{NBSP}oh{NBSP}{lo[1]}"
    return f"{hi}{NBSP}{lo}"


def _rewrite(core: str, dot: bool, next_core: str) -> tuple[str | None, bool]:
    """(spoken form or None, whether the token's trailing period was part of an abbreviation)."""
    low = core.lower()
    if re.fullmatch(r"(1[1-9]|20)\d\d", core):
        return _year(core), False
    if m := re.fullmatch(r"(\d\d)(\d)0'?s", core):
        if m.group(1) == "20" and m.group(2) == "0":
            return f"two{NBSP}thousands", False
        if m.group(2) in _DECADES:
            return f"{m.group(1)}{NBSP}{_DECADES[m.group(2)]}", False
        return f"{m.group(1)}{NBSP}hundreds", False
    if m := re.fullmatch(r"'?(\d)0'?s", core):
        return _DECADES.get(m.group(1)), False
    if m := re.fullmatch(r"(\d{1,4})[-–](\d{1,4})", core):
        return f"{m.group(1)}{NBSP}to{NBSP}{m.group(2)}", False
    if m := re.fullmatch(r"~(\d[\d.,]*)", core):
        return f"about{NBSP}{m.group(1)}", False
    if m := re.fullmatch(r"(\d[\d.,]*)(°[CF]|km/h|kWh|km|kg|cm|mm|mph|ms)", core):
        return f"{m.group(1)}{NBSP}{_UNITS[m.group(2)].replace(' ', NBSP)}", False
    if dot and low in ("no", "nos") and re.match(r"\d", next_core):
        return ("number" if low == "no" else "numbers"), True
    if dot and low in _MONTHS:
        return _MONTHS[low], True
    if low in _ABBREV and (dot or not _ABBREV_NEEDS_DOT[low]):
        return _ABBREV[low], dot
    return None, False


def spoken_tokens(text: str) -> tuple[str, list[str]]:
    """(text for espeak, display tokens): the i-th token of the first is spoken for the i-th
    display token. Whitespace between tokens is kept (blank lines end sentences)."""
    parts = _WS.split(text)
    cores = [_TOKEN.match(p).group("core") if p and not _WS.fullmatch(p) else "" for p in parts]
    display, out = [], []
    for i, part in enumerate(parts):
        if not part or _WS.fullmatch(part):
            out.append(part)
            continue
        m = _TOKEN.match(part)
        nxt = cores[i + 2] if i + 2 < len(parts) else ""
        # Units directly after a number ("5 km") are rewritten as a word of their own.
        prev = cores[i - 2] if i >= 2 else ""
        core, post = m.group("core"), m.group("post")
        if core in _UNITS and re.fullmatch(r"\d[\d.,]*", prev):
            new, used_dot = _UNITS[core].replace(" ", NBSP), False
        else:
            new, used_dot = _rewrite(core, post.startswith("."), nxt)
        display.append(part)
        if new is None:
            out.append(part)
        else:
            out.append(m.group("pre") + new + (post[1:] if used_dot else post))
    return "".join(out), display
