"""Typed errors. The library raises these; only the CLI turns them into one line and an exit code.

Every message names the bad value and what would be valid. Exit codes are part of the CLI's
contract and documented in the README:

====  ======================================================
 0    success
 1    unexpected internal error (a bug: rerun with --debug)
 2    usage error (bad option value, missing argument)
 3    model not found
 4    model invalid or unsupported (corrupt weights, wrong layout, unknown architecture)
 5    input file invalid (script, storyboard, audio, text)
 6    output could not be written
 7    conversion failed its quality check
 8    a batch job failed (the others ran; see the batch summary)
 9    the Ray cluster cannot be reached (edgegen batch --engine ray)
130   interrupted (Ctrl-C)
====  ======================================================
"""

from __future__ import annotations

from collections.abc import Callable


class EdgegenError(Exception):
    """Base class: a one-line, user-facing message plus a process exit code.

    Where one parameter would fix the problem, ``option`` names it as the library spells it
    (``"force"``, ``"config_from"``) and ``advice`` says what to do, with ``{}`` where the
    parameter goes: the library never names a command-line flag, and the CLI, which knows its
    flags, spells the option as one (:meth:`describe`).
    """

    exit_code = 1

    def __init__(self, message: str, *, option: str | None = None, advice: str = "") -> None:
        super().__init__(message)
        self.message, self.option, self.advice = message, option, advice

    def describe(self, spell: Callable[[str], str] = str) -> str:
        """The message with its advice, ``option`` spelled by ``spell``."""
        if self.option is None or not self.advice:
            return self.message
        return f"{self.message}; {self.advice.format(spell(self.option))}"

    def __str__(self) -> str:
        return self.describe()


class UsageError(EdgegenError, ValueError):
    """A parameter value is out of range or malformed."""

    exit_code = 2


class ModelNotFoundError(EdgegenError, FileNotFoundError):
    """A model path, store name or cache id does not resolve to anything on disk."""

    exit_code = 3


class ModelError(EdgegenError):
    """A model exists but cannot be used: corrupt, incomplete or unsupported."""

    exit_code = 4


class UnsupportedModelError(ModelError):
    """The model's architecture is one edgegen does not implement (e.g. FLUX, SD3)."""


class WeightMappingError(ModelError):
    """Source weights do not match the target model: a key is missing, unused or mis-shaped."""


class InputFileError(EdgegenError):
    """A user-supplied input file (script, storyboard, text, audio) is invalid."""

    exit_code = 5


class OutputError(EdgegenError):
    """An output file or directory could not be written."""

    exit_code = 6


class QualityError(EdgegenError):
    """A conversion produced output below its quality threshold."""

    exit_code = 7


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is (see :func:`raise_on_sigterm`): everything that
    cleans up after Ctrl-C (temporary files, helper processes, a batch's summary) cleans up
    after it too; the CLI exits 143."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in the main thread (a no-op elsewhere)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
