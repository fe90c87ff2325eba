"""``edgegen batch --engine ray``: the batch's jobs as Ray tasks on actors with warm models.

Each actor is one process holding its own :class:`~edgegen.warm.Models` (so a model loads
once per actor, not once per job) and runs one job at a time; the driver hands the next job
to whichever actor is free and records each result as it arrives, exactly as the local engine
does. Outputs are written by the actor, atomically, where the job says: on several machines
that must be a path every machine sees (a shared file system).

Ray is an optional extra (``pip install "edgegen[cluster]"``). Without ``address`` a local
Ray instance is started on the loopback address and stopped at the end; with one, edgegen
joins that cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on
the others) and leaves it running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgegen.errors import EdgegenError, UsageError


class ClusterError(EdgegenError):
    """The Ray cluster cannot be reached or used."""

    exit_code = 9


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--engine ray needs Ray, which is not installed; pip install 'edgegen[cluster]'"
        ) from None
    return ray


class _Worker:
    """The body of a Ray actor: warm models and the local engine's job runner (``attempt``,
    handed over by edgegen.batch, which this module does not import: no cycle)."""

    def __init__(
        self, threads: int | None, new_models: Callable[[], Any], attempt: Callable
    ) -> None:
        import os

        import edgegen  # noqa: F401  (the optimized BLAS before MLX, in this process too)
        from edgegen._blas import set_threads

        # As many BLAS threads as a local run on this machine would use (Ray's default is 1),
        # so an image comes out byte-identical on either engine.
        set_threads(threads or os.cpu_count() or 1)
        self.models = new_models()
        self.attempt = attempt

    def run(self, unit: list[Any], retry: int) -> list[Any]:
        return self.attempt(unit, self.models, retry, lambda event, job, details: None)

    def loads(self) -> dict[str, int]:
        return dict(self.models.loads)


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail in one line, fast, when nothing listens at ``HOST:PORT`` (Ray itself retries for
    minutes before giving up)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"Ray address {address!r} must be HOST:PORT, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(
            f"no Ray cluster answers at {address!r} ({e.strerror or e}); start one with "
            "'ray start --head' there, or leave out --address for a local one"
        ) from None


def run_on_ray(
    units: list[list[Any]],
    retry: int,
    workers: int,
    address: str | None,
    record: Callable[[Any], None],
    notify: Callable[[str, Any, dict[str, Any]], None],
    new_models: Callable[[], Any],
    attempt: Callable[..., Any],
    failed: Callable[[Any, str], Any],
) -> dict[str, int]:
    """Run ``units`` (lists of jobs) on ``workers`` Ray actors, each with ``new_models()`` and
    running a unit with ``attempt(unit, models, retry, notify)`` (a list of results);
    ``record`` gets each result as it arrives (``failed(job, why)`` for each job of a unit whose
    actor died). Returns the model loads summed over the actors."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                         log_to_driver=False, configure_logging=False)  # fmt: skip
            else:
                check_address(address)
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ClusterError:
            raise
        except Exception as e:  # ConnectionError, TimeoutError, RuntimeError…
            raise ClusterError(
                f"cannot join the Ray cluster at {address!r}: {type(e).__name__}: {e}"
                if address
                else f"cannot start a local Ray instance: {type(e).__name__}: {e}"
            ) from None
    try:
        import os

        actor = ray.remote(num_cpus=0)(_Worker)
        threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        count = int(threads) if threads else None
        pool = [actor.remote(count, new_models, attempt) for _ in range(workers)]
        pending: dict[Any, tuple[list[Any], Any]] = {}
        queue = list(units)
        free = list(pool)
        while queue or pending:
            while queue and free:
                unit, a = queue.pop(0), free.pop(0)
                for job in unit:
                    notify("start", job, {"attempt": 1})
                pending[a.run.remote(unit, retry)] = (unit, a)
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit, a = pending.pop(ready[0])
            free.append(a)
            try:
                results = ray.get(ready[0])
            except Exception as e:  # the actor died (out of memory, killed)
                why = f"the Ray worker failed: {type(e).__name__}: {e}"
                results = [failed(job, why) for job in unit]
            for job, result in zip(unit, results, strict=True):
                record(result)
                notify(result.status, job, {"result": result})
        loads: dict[str, int] = {}
        for per_actor in ray.get([a.loads.remote() for a in pool]):
            for k, v in per_actor.items():
                loads[k] = loads.get(k, 0) + v
        return loads
    finally:
        if started_here:
            ray.shutdown()
