"""Storyboards: what to render, read from a plain script (.md/.txt) or a TOML storyboard.

A plain script is one scene per paragraph. Optional hints in square brackets steer a scene
without being spoken::

    # Morning at sea                      <- the first H1 is the title
    The sun climbs out of a quiet sea.
    [visual: sunrise over a calm sea, small boats]  [camera: zoom-in]

A hint-only paragraph applies to the paragraph after it. A TOML storyboard carries the same
scenes plus the video's settings (see ``examples/storyboard.toml``).

Every validation error is an :class:`InputFileError` that starts with ``file:line: field:`` so
the user can jump straight to the mistake. Nothing is silently corrected.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgegen.errors import InputFileError
from edgegen.video.kenburns import MOVES
from edgegen.video.prompts import STYLES

SCRIPT_SUFFIXES = (".md", ".markdown", ".txt")
STORYBOARD_SUFFIXES = (".toml",)
HINTS = ("visual", "camera")
MIN_SIDE, MAX_SIDE = 144, 4096


@dataclass(frozen=True)
class Scene:
    narration: str
    visual: str | None = None  # image description; None = derived from the narration
    camera: str | None = None  # one of kenburns.MOVES; None = varied automatically
    duration: float | None = None  # seconds; a floor, the speech always fits
    seed: int | None = None  # None = derived from the video seed
    line: int = 0  # 1-based line where the scene starts in its file


@dataclass(frozen=True)
class Storyboard:
    path: Path
    scenes: tuple[Scene, ...]
    title: str | None = None
    style: str = "cinematic"  # a key of prompts.STYLES
    character: str | None = None  # character/style sheet added to every scene's prompt
    voice: str | None = None  # None = the speech engine's default voice
    music: Path | None = None  # resolved against the storyboard's folder
    seed: int = 0  # every scene seed is derived from this one
    width: int = 1080
    height: int = 1920
    fps: int = 30
    captions: bool = True
    crossfade: float = 0.4  # seconds of cross-dissolve between scenes
    speed: float = 1.0  # speaking rate passed to the voice
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # field -> line

    def where(self, key: str) -> str:
        """``file:line`` for a top-level field (``file`` alone when it came from elsewhere)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else f"{self.path}"

    def with_overrides(self, **changes: Any) -> Storyboard:
        """A copy with command-line overrides applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _fail(path: Path, line: int | None, fieldname: str | None, message: str) -> InputFileError:
    where = f"{path}:{line}" if line else f"{path}"
    return InputFileError(
        f"{where}: {fieldname}: {message}" if fieldname else f"{where}: {message}"
    )


def load(path: Path) -> Storyboard:
    """Read and validate a script or storyboard; the suffix decides which."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputFileError(f"{path}: file not found") from e
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise InputFileError(f"{path}: cannot read: {e.strerror}") from e
    suffix = path.suffix.lower()
    if suffix in STORYBOARD_SUFFIXES:
        board = _parse_toml(path, text)
    elif suffix in SCRIPT_SUFFIXES:
        board = _parse_script(path, text)
    else:
        raise InputFileError(
            f"{path}: unknown script type {suffix!r}; "
            f"use {', '.join(SCRIPT_SUFFIXES + STORYBOARD_SUFFIXES)}"
        )
    validate(board)
    return board


# --- plain scripts -----------------------------------------------------------------------------

_HINT = re.compile(r"\[\s*([A-Za-z_-]+)\s*:\s*([^\]]*)\]")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _clean_markdown(line: str) -> str:
    line = _LINK.sub(r"\1", line)
    line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line)  # list markers
    line = re.sub(r"^\s*>\s?", "", line)  # block quotes
    return re.sub(r"(\*\*|__|\*|`)", "", line).strip()


def _parse_script(path: Path, text: str) -> Storyboard:
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    title: str | None = None
    scenes: list[Scene] = []
    words: list[str] = []
    hints: dict[str, str] = {}
    start = 0

    def flush() -> None:
        nonlocal words, hints
        if words:
            scenes.append(
                Scene(
                    narration=" ".join(words),
                    visual=hints.get("visual"),
                    camera=hints.get("camera"),
                    line=start,
                )
            )
            words, hints = [], {}

    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or re.fullmatch(r"\s*(-{3,}|\*{3,}|_{3,})\s*", raw):
            flush()
            continue
        heading = re.match(r"^\s*(#{1,6})\s+(.*)$", raw)
        if heading:
            flush()
            if heading.group(1) == "#" and title is None:
                title = heading.group(2).strip()
            continue
        for key, value in _HINT.findall(raw):
            if key.lower() not in HINTS:
                raise _fail(
                    path, number, None, f"unknown hint [{key}: …]; use [visual: …] or [camera: …]"
                )
            if key.lower() == "camera" and value.strip() not in MOVES:
                raise _fail(
                    path,
                    number,
                    "camera",
                    f"{value.strip()!r} is not a camera move; choose one of {', '.join(MOVES)}",
                )
            hints[key.lower()] = value.strip()
        spoken = _clean_markdown(_HINT.sub(" ", raw))
        if spoken:
            if not words:
                start = number
            words.extend(spoken.split())
    flush()
    if not scenes:
        raise _fail(path, None, None, "no narration found; write one paragraph per scene")
    return Storyboard(path=path, scenes=tuple(scenes), title=title)


# --- TOML storyboards --------------------------------------------------------------------------

_TOP_KEYS = {
    "title": str,
    "style": str,
    "character": str,
    "voice": str,
    "music": str,
    "seed": int,
    "size": str,
    "fps": int,
    "captions": bool,
    "crossfade": (int, float),
    "speed": (int, float),
}
_SCENE_KEYS = {
    "narration": str,
    "visual": str,
    "camera": str,
    "duration": (int, float),
    "seed": int,
}


def _toml_lines(text: str) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Line numbers of top-level keys and of each ``[[scenes]]`` table's keys.

    ``tomllib`` reports no positions, so we scan the text ourselves; it is enough to point
    the user at the right line for the simple layouts a storyboard uses.
    """
    top: dict[str, int] = {}
    scenes: list[dict[str, int]] = []
    table: dict[str, int] | None = top
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[[") and line.rstrip("]").strip("[ ").strip() == "scenes":
            scenes.append({"": number})
            table = scenes[-1]
            continue
        if line.startswith("["):
            table = None
            continue
        key = re.match(r'^["\']?([A-Za-z0-9_-]+)["\']?\s*=', line)
        if key and table is not None:
            table.setdefault(key.group(1), number)
    return top, scenes


def _check_type(
    path: Path, line: int | None, key: str, value: Any, want: type | tuple[type, ...]
) -> None:
    # bool is an int in Python, but `fps = true` is a mistake worth naming
    wrong_bool = isinstance(value, bool) and want is not bool
    if wrong_bool or not isinstance(value, want):
        names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
        raise _fail(path, line, key, f"expected {names}, got {value!r}")


def _parse_toml(path: Path, text: str) -> Storyboard:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # Python < 3.14 has no e.lineno: the position is only in the message
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise _fail(path, int(m.group(1)) if m else None, None, f"invalid TOML: {msg}") from e
    top_lines, scene_lines = _toml_lines(text)

    for key, value in data.items():
        if key == "scenes":
            continue
        if key not in _TOP_KEYS:
            known = ", ".join(sorted([*_TOP_KEYS, "scenes"]))
            raise _fail(path, top_lines.get(key), key, f"unknown field; valid fields: {known}")
        _check_type(path, top_lines.get(key), key, value, _TOP_KEYS[key])

    raw_scenes = data.get("scenes")
    if not isinstance(raw_scenes, list) or not raw_scenes:
        raise _fail(path, None, "scenes", "no scenes; add at least one [[scenes]] table")
    scenes = []
    for i, raw in enumerate(raw_scenes):
        lines = scene_lines[i] if i < len(scene_lines) else {}
        if not isinstance(raw, dict):
            raise _fail(path, lines.get(""), f"scenes[{i}]", "expected a [[scenes]] table")
        for key, value in raw.items():
            if key not in _SCENE_KEYS:
                raise _fail(
                    path,
                    lines.get(key),
                    f"scenes[{i}].{key}",
                    f"unknown field; valid fields: {', '.join(_SCENE_KEYS)}",
                )
            _check_type(path, lines.get(key), f"scenes[{i}].{key}", value, _SCENE_KEYS[key])
        narration = " ".join(str(raw.get("narration", "")).split())
        if not narration:
            raise _fail(
                path, lines.get("narration", lines.get("")), f"scenes[{i}].narration", "is empty"
            )
        scenes.append(
            Scene(
                narration=narration,
                visual=raw.get("visual"),
                camera=raw.get("camera"),
                duration=float(raw["duration"]) if "duration" in raw else None,
                seed=raw.get("seed"),
                line=lines.get("", 0),
            )
        )

    width, height = 1080, 1920
    if "size" in data:
        width, height = parse_size(data["size"], where=f"{path}:{top_lines.get('size')}: size")
    music = data.get("music")
    board = Storyboard(
        path=path,
        scenes=tuple(scenes),
        title=data.get("title"),
        style=data.get("style", "cinematic"),
        character=data.get("character"),
        voice=data.get("voice"),
        music=(path.parent / music) if music else None,
        seed=data.get("seed", 0),
        width=width,
        height=height,
        fps=data.get("fps", 30),
        captions=data.get("captions", True),
        crossfade=float(data.get("crossfade", 0.4)),
        speed=float(data.get("speed", 1.0)),
        lines={**top_lines, **{f"scenes[{i}]": s.get("", 0) for i, s in enumerate(scene_lines)}},
    )
    for i, s in enumerate(scenes):
        for key in ("camera", "duration"):
            if getattr(s, key) is not None and i < len(scene_lines):
                board.lines[f"scenes[{i}].{key}"] = scene_lines[i].get(key, s.line)
    return board


# --- validation shared by both forms and by command-line overrides -----------------------------


def parse_size(value: str, *, where: str = "size") -> tuple[int, int]:
    """``"1080x1920"`` -> ``(1080, 1920)``; even sides in [144, 4096] (H.264 4:2:0 needs even)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
    if not m:
        raise InputFileError(f"{where}: {value!r} is not WIDTHxHEIGHT (e.g. 1080x1920)")
    w, h = int(m.group(1)), int(m.group(2))
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w % 2 or h % 2:
        raise InputFileError(
            f"{where}: {w}x{h} is invalid; both sides must be even and within "
            f"{MIN_SIDE}..{MAX_SIDE} (e.g. 1080x1920)"
        )
    return w, h


def validate(board: Storyboard) -> None:
    """Check the settings that overrides can change too; raise naming file:line and field."""
    p = board.path
    if board.style not in STYLES:
        raise InputFileError(
            f"{board.where('style')}: style: {board.style!r} is unknown; "
            f"choose one of {', '.join(STYLES)}"
        )
    parse_size(f"{board.width}x{board.height}", where=f"{board.where('size')}: size")
    if not 1 <= board.fps <= 120:
        raise InputFileError(f"{board.where('fps')}: fps: {board.fps} is not within 1..120")
    if not 0 <= board.crossfade <= 2:
        raise InputFileError(
            f"{board.where('crossfade')}: crossfade: {board.crossfade} s is not within 0..2"
        )
    if not 0.5 <= board.speed <= 2:
        raise InputFileError(f"{board.where('speed')}: speed: {board.speed} is not within 0.5..2")
    if board.music is not None and not Path(board.music).is_file():
        raise InputFileError(f"{board.where('music')}: music: file {str(board.music)!r} not found")
    for i, s in enumerate(board.scenes):
        if s.camera is not None and s.camera not in MOVES:
            where = board.lines.get(f"scenes[{i}].camera", s.line)
            raise _fail(
                p,
                where,
                f"scenes[{i}].camera",
                f"{s.camera!r} is not a camera move; choose one of {', '.join(MOVES)}",
            )
        if s.duration is not None and not 0.5 <= s.duration <= 600:
            where = board.lines.get(f"scenes[{i}].duration", s.line)
            raise _fail(p, where, f"scenes[{i}].duration", f"{s.duration} s is not within 0.5..600")
