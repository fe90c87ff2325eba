"""The local model store: one directory per converted model, each with a ``manifest.json``.

Layout::

    $EDGEGEN_HOME/models/<name>/manifest.json
    $EDGEGEN_HOME/models/<name>/<component>.safetensors ...

``EDGEGEN_HOME`` defaults to ``~/Library/Application Support/edgegen`` on macOS and
``$XDG_DATA_HOME/edgegen`` (``~/.local/share/edgegen``) elsewhere.

The manifest is self-describing and versioned (``format_version``). A loader refuses a newer
format with a clear message and keeps reading every older one. Its top-level keys::

    format          "edgegen-model"
    format_version  int, FORMAT_VERSION when written
    name, kind      store name; "diffusion" | "voice" | "upscaler"
    family          e.g. "sd1", "sd2", "sdxl", "piper-vits"
    edgegen_version, created (ISO 8601 UTC)
    source          {"path": str, "files": {relative name: sha256}}
    targets         {"mlx": {"components": {name: {"file", "dtype", "quantization", "bytes",
                     "sha256"}}}, "coreml": {...}}   (room for several targets)
    config          the model's own configuration (family-specific)
    license, model_card, quality   optional
Artifacts are written into a hidden temporary directory and renamed into place at the end, so a
crash or Ctrl-C never leaves a half-written model visible. The directory's name carries the
writer's pid; one whose writer was killed outright (``kill -9``) is removed by the next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgegen.errors import ModelError, ModelNotFoundError, OutputError, UsageError

FORMAT = "edgegen-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """Read and validate ``model_dir/manifest.json``; refuse formats newer than this edgegen."""
    path = Path(model_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(f"{str(model_dir)!r} has no {MANIFEST}; it is not an edgegen model") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{str(path)!r} is not an edgegen manifest (format != {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{str(path)!r} has invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"model {data.get('name')!r} uses format version {version}, newer than this edgegen "
            f"reads (≤ {FORMAT_VERSION}); upgrade edgegen"
        )
    return data


def list_models() -> list[tuple[Path, dict[str, Any]]]:
    """Every readable model in the store, sorted by name; unreadable entries are skipped."""
    root = models_dir()
    found = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            with contextlib.suppress(ModelError):
                found.append((entry, read_manifest(entry)))
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
        raise UsageError(f"model {name!r} already exists in the store; pass --force to replace it")
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


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    (Path(directory) / MANIFEST).write_text(
        json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
