"""The local model store: one directory per converted model, each with a ``manifest.json``.

Layout::

    $EDGEGEN_HOME/models/<name>/manifest.json
    $EDGEGEN_HOME/models/<name>/<component>.safetensors ...

``EDGEGEN_HOME`` defaults to ``~/Library/Application Support/edgegen`` on macOS and
``$XDG_DATA_HOME/edgegen`` (``~/.local/share/edgegen``) elsewhere.

Each artifact's ``manifest.json`` is an ``edgegen.converters.manifest.Manifest``.
Artifacts are written into a hidden temporary directory and renamed into place at the end, so a
crash or Ctrl-C never leaves a half-written model visible. The directory's name carries the
writer's pid; one whose writer was killed outright (``kill -9``) is removed by the next write.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from edgegen.converters.manifest import FORMAT_VERSION, MANIFEST, Manifest
from edgegen.errors import ModelError, ModelNotFoundError, OutputError, UsageError

__all__ = ["FORMAT_VERSION", "MANIFEST", "find", "home", "list_models", "new_artifact"]
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def home() -> Path:
    env = os.environ.get("EDGEGEN_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "edgegen"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "edgegen"


def models_dir() -> Path:
    return home() / "models"


def check_name(name: str) -> str:
    if not name or name.startswith(".") or not set(name) <= _NAME_CHARS:
        raise UsageError(
            f"model name {name!r} is invalid; use lowercase letters, digits, '-', '_' and '.'"
        )
    return name


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def list_models() -> list[tuple[Path, Manifest]]:
    """Every readable model in the store, sorted by name; unreadable entries are skipped."""
    root = models_dir()
    found = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            with contextlib.suppress(ModelError):
                found.append((entry, Manifest.read(entry)))
    return found


def find(name: str) -> Path:
    """The directory of store model ``name``; the error lists what the store holds."""
    path = models_dir() / name
    if (path / MANIFEST).is_file():
        return path
    names = [p.name for p, _ in list_models()]
    have = ", ".join(names) if names else "the store is empty"
    raise ModelNotFoundError(f"no model named {name!r} in {str(models_dir())!r} ({have})")


def exists(name: str) -> bool:
    return (models_dir() / name / MANIFEST).is_file()


@contextlib.contextmanager
def new_artifact(name: str, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes ``models/<name>``.

    The caller writes weights and ``manifest.json`` into it. An exception (or Ctrl-C) removes
    the temporary directory and leaves any existing model untouched.
    """
    check_name(name)
    final = models_dir() / name
    if final.exists() and not force:
        raise UsageError(
            f"model {name!r} already exists in the store", option="force",
            advice="pass {} to replace it",
        )  # fmt: skip
    try:
        models_dir().mkdir(parents=True, exist_ok=True)
        sweep_stale()
        # The writer's pid in the name lets a later run tell a live writer from a dead one.
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", dir=models_dir()))
    except OSError as e:
        raise OutputError(f"cannot write to the model store {str(models_dir())!r}: {e}") from e
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise ModelError(f"internal: artifact {name!r} was written without a manifest")
        old = None
        if final.exists():
            old = final.with_name(f".{name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise OutputError(f"cannot write model {name!r} to the store: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# Hidden working directories of new_artifact: ".NAME.PID.RANDOM" and ".NAME.old-PID".
_WORKING = re.compile(r"^\.(?:.+)\.(?:(\d+)\.[A-Za-z0-9_]+|old-(\d+))$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale() -> list[Path]:
    """Remove working directories left by a writer that no longer runs (killed mid-write,
    e.g. ``kill -9`` during a conversion, which no ``finally`` survives); the removed paths."""
    root = models_dir()
    removed = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        m = _WORKING.match(entry.name)
        if m is None or not entry.is_dir():
            continue
        pid = int(m.group(1) or m.group(2))
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def remove(name: str) -> None:
    shutil.rmtree(find(name))
