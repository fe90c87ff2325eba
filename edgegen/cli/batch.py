"""``edgegen batch JOBS``: check every job, then run the valid ones (resumably).

A thin layer over :class:`edgegen.batch.Batch`: rich progress (overall and the current job)
and a closing line. Exit status 0 when every valid job is done or skipped, 5 when the file had
invalid jobs (the valid ones still ran), 8 when a job failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgegen.cli.options import examples

EXIT_JOB_FAILED = 8


@click.command(
    "batch",
    epilog=examples(
        "edgegen batch jobs.jsonl                # resumable: a re-run skips what is done",
        "edgegen batch jobs.toml --retry 1",
        "edgegen batch jobs.jsonl --engine ray --address 10.0.0.5:6379 --workers 4",
    ),
)
@click.argument("jobs", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: Ray actors (pip install 'edgegen[cluster]').")  # fmt: skip
@click.option(
    "--address", default=None, help="Ray: join this cluster (default: start a local one)."
)
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Ray: actors, each holding its own warm models.")  # fmt: skip
@click.option("--retry", type=click.IntRange(0, 10), default=0, show_default=True,
              help="Run a failing job again up to N times.")  # fmt: skip
@click.option("--check", "check_only", is_flag=True, help="Check the jobs and stop.")
def batch(jobs: Path, engine: str, address: str | None, workers: int, retry: int,
          check_only: bool) -> None:  # fmt: skip
    """Run the generate, speak and render jobs of JOBS (.jsonl or .toml)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgegen.batch import Batch
    from edgegen.cli.progress import console

    b = Batch.open(jobs)
    for problem in b.problems:
        console.print(f"[red]invalid:[/red] {problem}", soft_wrap=True, highlight=False)
    console.print(
        f"{len(b.jobs)} valid job(s), {len(b.problems)} problem(s) in {jobs}", highlight=False
    )
    if check_only:
        click.get_current_context().exit(5 if b.problems else 0)
    if engine != "ray" and address is not None:
        from edgegen.errors import UsageError

        raise UsageError("--address applies to --engine ray")
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        overall = progress.add_task("jobs", total=len(b.jobs))
        current = progress.add_task("", total=None, visible=False)

        def on_event(event: str, job: Any, details: dict[str, Any]) -> None:
            if event == "start":
                progress.update(
                    current, description=job.label, completed=0, total=None, visible=True
                )
            elif event == "progress":
                progress.update(current, completed=details["done"], total=details["total"])
            elif event in ("done", "skipped", "failed"):
                progress.advance(overall)
                if event == "failed":
                    progress.console.print(
                        f"[red]failed:[/red] {job.label} (line {job.line}): "
                        f"{details['result'].error}", soft_wrap=True, highlight=False,
                    )  # fmt: skip

        report = b.run(engine=engine, retry=retry, workers=workers, address=address,
                       progress=on_event)  # fmt: skip
        progress.update(current, visible=False)
    console.print(f"summary: {report.summary}", highlight=False)
    if report.contact_sheet:
        console.print(f"contact sheet: {report.contact_sheet}", highlight=False)
    console.print(report.line, highlight=False)
    if report.count("failed"):
        click.get_current_context().exit(EXIT_JOB_FAILED)
    if b.problems:
        click.get_current_context().exit(5)
