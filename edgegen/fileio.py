"""Atomic output (write to a temporary name beside the target, then rename), file hashes and
the one reader of a model's JSON files.

A crash, Ctrl-C or full disk never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgegen.errors import ModelError, OutputError


def check_writable(path: Path) -> None:
    """Raise OutputError, before any work, when ``path`` cannot be written: an ancestor is a
    file, the nearest existing folder is not writable, or ``path`` is a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {str(path)!r}: {str(parent)!r} is not writable")


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success rename it onto ``path``.

    ``suffix`` defaults to the target's own suffix, so encoders that pick a format from the
    file name (PyAV, Pillow) see the right one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.",
            suffix=suffix if suffix is not None else path.suffix,
            dir=path.parent,
        )
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write to {str(path.parent)!r}: {e.strerror}") from e
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror}") from e
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a model's files; a missing, unreadable or non-object file is a
    one-line :class:`~edgegen.errors.ModelError` naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(f"{str(path)!r} is missing") from e
    except (OSError, ValueError) as e:
        raise ModelError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ModelError(f"{str(path)!r} is not a JSON object")
    return data
