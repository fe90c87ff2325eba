"""Rich progress and stage timing shared by the long-running commands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

console = Console(stderr=True)


class SecondsPerStep(ProgressColumn):
    """``2.31 s/it`` — the figure diffusion users compare, rather than a rate."""

    def render(self, task: Task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("-- s/it", style="progress.data.speed")
        return Text(f"{task.elapsed / task.completed:.2f} s/it", style="progress.data.speed")


def step_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SecondsPerStep(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class StageTimer:
    """Accumulates wall time per named stage for the closing summary."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())
        return f"{parts}; total {self.total:.1f}s"
