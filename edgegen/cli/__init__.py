"""The ``edgegen`` command line.

Commands are imported only when invoked, so ``edgegen --help`` does not load MLX. Library code
raises :class:`~edgegen.errors.EdgegenError`; this group turns it into one line on stderr and the
error's exit code (see edgegen/errors.py). ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from edgegen import __version__
from edgegen.errors import EdgegenError, Terminated, raise_on_sigterm

# name → "module:attribute" of a click command, loaded lazily.
COMMANDS = {
    "generate": "edgegen.cli.generate:generate",
    "speak": "edgegen.cli.speak:speak",
    "render": "edgegen.cli.render:render",
    "doctor": "edgegen.cli.doctor:doctor",
    "convert": "edgegen.cli.convert:convert",
    "models": "edgegen.cli.models:models",
    "upscale": "edgegen.cli.upscale:upscale",
    "batch": "edgegen.cli.batch:batch",
    "run": "edgegen.cli.run:run",
}
# Commands that run models: each says so in one line when MLX would run on a slow BLAS.
COMPUTE = {"generate", "speak", "render", "convert", "upscale", "batch", "run"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if name in COMPUTE and not {"-h", "--help"} & set(rest):
            _note_slow_blas()
        return name, command, rest

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get("EDGEGEN_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except EdgegenError as e:
            if debug:
                raise
            click.secho(f"Error: {e.describe(flag)}", fg="red", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt as e:
            if debug:
                raise
            terminated = isinstance(e, Terminated)
            click.echo("Terminated." if terminated else "Interrupted.", err=True)
            ctx.exit(143 if terminated else 130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            if debug:
                raise
            click.secho(
                f"Error: internal error ({type(e).__name__}: {e}); rerun with --debug for details",
                fg="red",
                err=True,
            )
            ctx.exit(1)


def flag(option: str) -> str:
    """How the command line spells a library parameter: ``config_from`` → ``--config-from``."""
    return "--" + option.replace("_", "-")


def _note_slow_blas() -> None:
    import edgegen
    from edgegen._blas import slow_blas_note
    from edgegen.device import on_gpu

    note = slow_blas_note(edgegen.BLAS, not on_gpu())
    if note:
        click.secho(note, fg="yellow", err=True)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="edgegen")
def cli(debug: bool) -> None:
    """Offline on-device generation: images, speech and vertical videos on MLX."""


def main() -> None:
    """The console script. Click's own usage errors (a bad option value, a missing argument)
    become one line like edgegen's, naming the command's --help, and exit 2."""
    raise_on_sigterm()  # SIGTERM cleans up as Ctrl-C does, then exits 143
    try:
        code = cli.main(prog_name="edgegen", standalone_mode=False)
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "edgegen"
        message = e.format_message().rstrip(".")
        click.secho(f"Error: {message} (see {where} --help)", fg="red", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.secho(f"Error: {e.format_message()}", fg="red", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
