"""``edgegen run``: type a prompt, watch it render, see it in the terminal, refine, repeat.

A line-oriented UI on rich and the standard line editor (readline: history, Ctrl-R, tab
completion of commands) rather than a full-screen Textual app: results stay in the
terminal's scrollback as a history you can scroll and copy from, inline images print the way
every graphics protocol expects (at the cursor, scrolling with the text), and the same session
runs unchanged from a pipe (``edgegen run < prompts.txt``: one line per prompt or command, one
result line per image on stdout, messages on stderr). The session logic is in
edgegen/cli/session.py; the image encoders in edgegen/cli/termimage.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from edgegen.cli.options import examples
from edgegen.errors import UsageError

PROMPT = "\001\x1b[1;36m\002edgegen>\001\x1b[0m\002 "  # \001..\002: readline skips the escapes


class TerminalUI:
    """rich on a terminal: live step progress, pictures inline, a settings panel."""

    def __init__(self, protocol: str) -> None:
        from rich.console import Console

        from edgegen.cli import termimage

        self.console = Console(highlight=False)
        self.protocol = protocol
        self.tmux = termimage.in_tmux()

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{_escape(text)}[/]")

    def error(self, text: str) -> None:
        self.console.print(f"[bold red]error:[/] {_escape(text)}")

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {_escape(text)}")

    def settings(self, rows: list[tuple[str, str]]) -> None:
        from rich.panel import Panel
        from rich.text import Text

        text = Text()
        for i, (key, value) in enumerate(rows):
            text.append("   " if i else "")
            text.append(f"{key} ", style="dim")
            text.append(value, style="bold")
        self.console.print(Panel(text, title="settings", title_align="left", expand=False))

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        with self.console.status(text):
            yield

    @contextmanager
    def progress(self) -> Iterator[Callable[[str, int, int], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from edgegen.cli.progress import SecondsPerStep

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   SecondsPerStep(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        tasks: dict[str, Any] = {}
        with Progress(*columns, console=self.console, transient=True) as bar:

            def update(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done, total=total)

            yield update

    def result(self, result, images: list) -> None:
        load = f", {result.load_seconds:.1f} s loading" if result.load_seconds >= 0.05 else ""
        names = ", ".join(str(p) for p in result.paths[:4])
        more = f" +{len(result.paths) - 4}" if len(result.paths) > 4 else ""
        self.console.print(
            f"[green]✓[/] [bold]#{result.number}[/] {_escape(names)}{more}  "
            f"[dim]{_escape(result.details)} · {result.seconds:.1f} s{load}[/]"
        )
        if images and self.protocol != "none":
            self.console.file.write(self.picture(images))
            self.console.file.flush()

    def picture(self, images: list) -> str:
        from edgegen.cli import termimage

        image = images[0] if len(images) == 1 else termimage.grid(images)
        cols, rows = shutil.get_terminal_size((80, 24))
        box = (max(8, min(cols - 2, 40 if len(images) == 1 else cols - 2)), max(8, rows - 6))
        if self.protocol == "blocks":
            cell, scale = (1, 2), 1.0  # one pixel wide, two tall
        else:
            cell, scale = termimage.cell_pixels(), 2.0
        cells = termimage.fit_cells(image.size, box, cell, scale)
        return termimage.encode(image, self.protocol, cells, cell, self.tmux)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        from rich.table import Table

        t = Table(title=title, title_justify="left", show_edge=False)
        for c in columns:
            t.add_column(c)
        for row in rows:
            t.add_row(*(_escape(v) for v in row))
        self.console.print(t)


class LineUI:
    """A pipe: one result line per image on stdout; messages and errors on stderr, errors
    with the input line they came from."""

    def __init__(self) -> None:
        self.line = 0

    def message(self, text: str) -> None:
        click.echo(text, err=True)

    def error(self, text: str) -> None:
        click.echo(f"error: line {self.line}: {text}", err=True)

    def warning(self, text: str) -> None:
        click.echo(f"warning: line {self.line}: {text}", err=True)

    def settings(self, rows: list[tuple[str, str]]) -> None:
        pass  # the parameters chunk of each image records what was used

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        yield

    @contextmanager
    def progress(self) -> Iterator[Callable[[str, int, int], None]]:
        yield lambda label, done, total: None

    def result(self, result, images: list) -> None:
        if result.kind in ("image", "variations"):
            for path, seed in zip(result.paths, result.seeds, strict=False):
                click.echo(f"{path}\tseed={seed}\t{result.details}\t{result.seconds:.1f}s")
        else:
            click.echo(f"{result.paths[0]}\t{result.details}\t{result.seconds:.1f}s")

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        for row in rows:
            click.echo("\t".join(row))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.command(
    "run",
    epilog=examples(
        "edgegen run",
        "edgegen run --model sd15-q8 --out ~/Pictures/edgegen",
        "edgegen run < prompts.txt      # one prompt or /command per line",
    ),
)
@click.option(
    "--model", "-m", envvar="EDGEGEN_MODEL", help="Model to start on (default: the built-in one)."
)
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("edgegen-run"),
    show_default=True,
    help="Folder for the images, speech and videos.",
)
@click.pass_context
def run(ctx: click.Context, model: str | None, out: Path) -> None:
    """Interactive prompt loop: images in the terminal, models kept loaded. Type /help inside.

    With stdin not a terminal, reads one prompt or /command per line and prints one line per
    image (path, seed, settings, seconds); the exit status is 0 when every line worked, else
    the first failure's code.
    """
    from edgegen.cli import termimage
    from edgegen.cli.session import Session, Settings

    debug = bool(ctx.find_root().params.get("debug")) or os.environ.get("EDGEGEN_DEBUG") == "1"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder (it is made if missing)")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    protocol = termimage.detect(tty=interactive)  # a bad EDGEGEN_IMAGE_PROTOCOL stops here
    ui: Any = TerminalUI(protocol) if interactive else LineUI()
    session = Session(out, ui, Settings(model=model), interrupt_cancels=interactive, debug=debug)
    try:
        if interactive:
            ui.console.print(
                f"[bold]edgegen run[/] — images go to [bold]{_escape(str(out))}[/]; "
                f"/help lists the commands, Ctrl-C cancels a generation, Ctrl-D or /quit leaves."
            )
        session.pipeline()  # a model that does not load is an error before the first prompt
        if interactive:
            session.show_settings()
            _interactive_loop(session)
            ui.console.print(f"[dim]{_escape(session.summary())}[/]")
        else:
            for n, line in enumerate(sys.stdin, 1):
                ui.line = n
                if not session.handle(line):
                    break
            click.echo(session.summary(), err=True)
    finally:
        session.close()
    if session.first_error is not None and not interactive:
        ctx.exit(session.first_error.exit_code)


def _interactive_loop(session) -> None:
    history = _setup_readline()
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                session.ui.console.print()
                return
            except KeyboardInterrupt:
                session.ui.console.print("\n[dim](Ctrl-D or /quit to leave)[/]")
                continue
            if not session.handle(line):
                return
    finally:
        if history is not None:
            _save_history(history)


def _setup_readline() -> Path | None:
    """Line editing, history kept across sessions, and tab completion of the commands."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    from edgegen.cli.session import COMMANDS

    names = [f"/{n}" for n in COMMANDS]

    def complete(text: str, state: int) -> str | None:
        matches = [n + " " for n in names if n.startswith(text)] if text.startswith("/") else []
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    readline.parse_and_bind("tab: complete")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    history = state / "edgegen" / "run-history"
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    return history


def _save_history(path: Path) -> None:
    import readline

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass  # history is a convenience; a read-only home must not fail the session
