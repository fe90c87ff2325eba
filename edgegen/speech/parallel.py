"""Sentences synthesized side by side: this process and helper processes, one per core.

Why processes, not threads: MLX feeds a graph's operations to its stream from the thread
that evaluates it and holds that thread back while more than ten tasks (of ten operations)
are queued on *any* stream of the process. Two threads decoding two sentences on their own
streams therefore starve each other: one thread waits on the other's backlog while its own
stream idles (seen in gdb: one stream thread idle, both feeding threads in the throttle's
wait). Measured on the 60-second benchmark text on 2 cores: 2.6 s with two threads; 1.9 s
with this module (one-by-one: 3.4 s).

How: a :class:`Helpers` pool (``cores - 1`` processes, started on first use and kept for the
voice's lifetime, each a fresh interpreter with its own copy of the synthesizer and
single-threaded BLAS, talking over two pipes) and this process take tasks from one priority
queue (:class:`_Queue`), earliest sentence first. A task is a whole sentence, except the last
one: its front end runs first, then its decoder is cut into one time chunk per lane
(``Vits.vocode``), so no core idles at the end. :class:`Schedule` returns results in order
while later sentences compute; this process works on queued tasks while it waits. A helper
that fails to start or dies is simply not used: this process can do every task itself.

Lifetime: helpers run in their own session (Ctrl-C reaches only the parent) and exit when
their pipe closes, i.e. when the voice is closed or collected or the parent exits or dies.
"""

from __future__ import annotations

import heapq
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.errors import ModelError, UsageError

MAX_LANES = 8
LANES_VAR = "EDGEGEN_SPEECH_LANES"
# The last sentence is cut into chunks only while each stays this long: every chunk also
# decodes 2 x Generator.context_frames (26 frames for Piper voices) of context.
MIN_CHUNK_FRAMES = 64


def cpu_lanes() -> int:
    """Processes worth running side by side: one per core this process may use, at most
    :data:`MAX_LANES`; ``EDGEGEN_SPEECH_LANES=N`` sets it (1: no helper processes)."""
    value = os.environ.get(LANES_VAR, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise UsageError(
                f"{LANES_VAR}={value!r} is not a whole number; use 1 (no helper processes) or more"
            ) from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_LANES))


def run_task(model: Any, op: str, payload: dict[str, Any]) -> Any:
    """One task, the same here and in a helper; the result is numpy (it may cross a pipe)."""
    import mlx.core as mx

    if op == "sentence":
        return model.synthesize(**payload)
    if op == "prepare":
        p = model.prepare(**payload)
        return p.frames, np.array(p.z), None if p.g is None else np.array(p.g)
    if op == "vocode":
        g = payload["g"]
        return model.vocode(
            mx.array(payload["z"]),
            None if g is None else mx.array(g),
            payload["start"],
            payload["end"],
        )
    raise ValueError(f"unknown task {op!r}")


def helper_main(argv: list[str]) -> None:
    """A helper process (arguments ``RFD WFD KIND PATH``, see :func:`_start_helper`): load
    the synthesizer, then run tasks from the pipe until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    rfd, wfd, kind, path = argv
    inbox = Connection(int(rfd), writable=False)
    outbox = Connection(int(wfd), readable=False)
    import mlx.core as mx

    from edgegen import _blas
    from edgegen.speech.synthesizer import load_model

    with _blas.single_threaded():
        try:
            model = load_model((kind, path))
            mx.eval(model.parameters())
        except Exception as e:  # reported; the parent works without this helper
            _reply(outbox, ("error", f"{type(e).__name__}: {e}"))
            return
        if not _reply(outbox, ("ready", None)):
            return
        while True:
            try:
                message = inbox.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            op, payload = message
            try:
                answer = ("ok", run_task(model, op, payload))
            except Exception as e:
                answer = ("error", f"{type(e).__name__}: {e}")
            if not _reply(outbox, answer):
                return


def _reply(outbox: Connection, message: Any) -> bool:
    """Send to the parent; False once it has gone (killed, or exited mid-task)."""
    try:
        outbox.send(message)
    except (BrokenPipeError, OSError):
        return False
    return True


class _Task:
    __slots__ = ("done", "error", "op", "owner", "payload", "result", "then")

    def __init__(self, owner: object, op: str, payload: dict[str, Any], then: Callable) -> None:
        self.owner, self.op, self.payload, self.then = owner, op, payload, then
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class _Queue:
    """Priority queue of tasks shared by this process and the helpers' feeding threads; one
    condition also signals finished tasks, so a waiting caller wakes for either."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self._heap: list[tuple[Any, int, _Task]] = []
        self._order = itertools.count()
        self.closed = False

    def put(self, priority: Any, task: _Task) -> None:
        with self.cond:
            heapq.heappush(self._heap, (priority, next(self._order), task))
            self.cond.notify_all()

    def take(self, block: bool = True) -> _Task | None:
        """The most urgent task; ``None`` if there is none and ``block`` is false, or once
        the queue is closed."""
        with self.cond:
            while not self._heap:
                if not block or self.closed:
                    return None
                self.cond.wait()
            return heapq.heappop(self._heap)[2]

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def finish(self, task: _Task, result: Any = None, error: BaseException | None = None) -> None:
        with self.cond:
            task.result, task.error, task.done = result, error, True
            task.then(task)
            self.cond.notify_all()

    def drop(self, owner: object) -> None:
        """Forget the queued (not yet started) tasks of ``owner``."""
        with self.cond:
            self._heap = [e for e in self._heap if e[2].owner is not owner]
            heapq.heapify(self._heap)


class Helpers:
    """Helper processes for one voice (``source`` as in ``Voice.source``)."""

    def __init__(self, source: tuple[str, str], count: int) -> None:
        self.queue = _Queue()
        self.ready = 0  # helpers that loaded the voice and take tasks
        self._reported = 0  # helpers that answered (ready or failed) or died
        self._procs: list[subprocess.Popen] = []
        self._conns: list[_Link] = []
        for _ in range(count):
            process, conn = _start_helper(source)
            self._procs.append(process)
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        """Feed one helper: take a task, send it, wait, report; give the task back if the
        helper has died."""
        try:
            status, _ = conn.recv()
        except (EOFError, OSError):
            status = "died"
        with self.queue.cond:
            self._reported += 1
            self.ready += status == "ready"
            self.queue.cond.notify_all()
        if status != "ready":
            return
        while True:
            task = self.queue.take()
            if task is None:  # closed
                return
            try:
                conn.send((task.op, task.payload))
                status, result = conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                with self.queue.cond:
                    self.ready -= 1
                self.queue.put((-1,), task)  # first in line for whoever is left
                return
            if status == "ok":
                self.queue.finish(task, result)
            else:
                self.queue.finish(task, error=ModelError(f"speech synthesis failed: {result}"))

    def wait_started(self, timeout: float) -> int:
        """Wait until every helper is ready or has failed; the number ready."""
        with self.queue.cond:
            self.queue.cond.wait_for(lambda: self._reported == len(self._conns), timeout)
            return self.ready

    @property
    def processes(self) -> list[subprocess.Popen]:
        return list(self._procs)

    def close(self) -> None:
        """Ask the helpers to exit (they also do when this process's end of their pipe
        closes, e.g. when it exits or is killed) and stop feeding them. Doesn't wait."""
        self.queue.close()
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass


class _Link:
    """The parent's end of a helper: messages out on one pipe, back on the other."""

    def __init__(self, outbox: Connection, inbox: Connection) -> None:
        self._out, self._in = outbox, inbox

    def send(self, message: Any) -> None:
        self._out.send(message)

    def recv(self) -> Any:
        return self._in.recv()


# The helper's first line: find edgegen where this process found it (appended, so nothing on
# the interpreter's own path is shadowed), then run edgegen.speech.helper.
_BOOT = (
    "import sys; sys.path.append(sys.argv.pop(1)); from edgegen.speech.helper import main; main()"
)


def _start_helper(source: tuple[str, str]) -> tuple[subprocess.Popen, _Link]:
    """A fresh interpreter running :func:`helper_main` on two pipes. Not multiprocessing: its
    spawn mode re-imports the caller's main script in the child (a script without a
    ``__main__`` guard would run again there), and fork would copy MLX's threads' state."""
    down_r, down_w = os.pipe()  # parent -> helper
    up_r, up_w = os.pipe()  # helper -> parent
    package_root = str(Path(__file__).resolve().parents[2])
    kind, path = source
    command = [sys.executable, "-c", _BOOT, package_root, str(down_r), str(up_w), kind, path]
    try:
        # Its own session: Ctrl-C in a terminal reaches only the parent, which then closes
        # the pipes; the helper never sees a KeyboardInterrupt (not even while importing).
        process = subprocess.Popen(
            command,
            pass_fds=(down_r, up_w),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(down_r)
        os.close(up_w)
    link = _Link(Connection(down_w, readable=False), Connection(up_r, writable=False))
    return process, link


class _Sentence:
    """A sentence's result as its tasks finish: frames, then audio in one or more parts."""

    def __init__(self) -> None:
        self.frames: np.ndarray | None = None
        self.parts: list[np.ndarray | None] = []
        self.pending = 1
        self.error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self.error is not None or self.pending == 0


class Schedule:
    """One run of requests (``Vits.synthesize`` keyword arguments) over this process and
    the helpers; :meth:`run` yields ``(audio, frames)`` in request order."""

    def __init__(self, model: Any, helpers: Helpers, requests: Sequence[dict[str, Any]]):
        self.model = model
        self.queue = helpers.queue
        self.lanes = 1 + len(helpers.processes)
        self.requests = list(requests)
        self.window = 2 * self.lanes + 2  # sentences queued ahead of the one being returned
        self.sentences: dict[int, _Sentence] = {}

    def run(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self.requests)
        try:
            for i in range(min(self.window, n)):
                self._submit(i)
            for i in range(n):
                sentence = self._wait(i)
                if i + self.window < n:
                    self._submit(i + self.window)
                yield np.concatenate(sentence.parts), sentence.frames
        finally:
            self.queue.drop(self)

    def _submit(self, i: int) -> None:
        s = self.sentences[i] = _Sentence()
        if i == len(self.requests) - 1 and self.lanes > 1:
            self._put(i, 1, "prepare", self.requests[i], lambda t: self._chunks(i, s, t))
        else:
            self._put(i, 1, "sentence", self.requests[i], lambda t: self._whole(s, t))

    def _put(self, i: int, step: int, op: str, payload: dict, then: Callable) -> None:
        self.queue.put((i, step), _Task(self, op, payload, then))

    @staticmethod
    def _whole(s: _Sentence, task: _Task) -> None:
        if task.error is None:
            audio, s.frames = task.result
            s.parts = [audio]
        s.error = task.error
        s.pending = 0

    def _chunks(self, i: int, s: _Sentence, task: _Task) -> None:
        """The last sentence's front end is done: queue its decoder, one chunk per lane."""
        if task.error is not None:
            s.error, s.pending = task.error, 0
            return
        s.frames, z, g = task.result
        total = z.shape[0]
        count = max(1, min(self.lanes, total // MIN_CHUNK_FRAMES))
        edges = [total * k // count for k in range(count + 1)]
        s.parts = [None] * count
        s.pending = count
        for k in range(count):
            payload = {"z": z, "g": g, "start": edges[k], "end": edges[k + 1]}
            self._put(i, 0, "vocode", payload, lambda t, k=k: self._part(s, k, t))

    @staticmethod
    def _part(s: _Sentence, k: int, task: _Task) -> None:
        if task.error is not None:
            s.error = task.error
        s.parts[k] = task.result
        s.pending -= 1

    def _wait(self, i: int) -> _Sentence:
        """Until sentence ``i`` is ready, do queued tasks here (or wait for the helpers)."""
        s = self.sentences.pop(i)
        while True:
            with self.queue.cond:
                if s.ready:
                    break
                task = self.queue.take(block=False)
                if task is None:
                    self.queue.cond.wait()
                    continue
            try:
                result = run_task(self.model, task.op, task.payload)
            except Exception as e:
                self.queue.finish(task, error=e)
            else:
                self.queue.finish(task, result)
        if s.error is not None:
            raise s.error
        return s
