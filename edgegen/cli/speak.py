"""``edgegen speak``: text to a WAV file, with optional word timings (.srt / .vtt / .json).

Long texts are synthesized sentence by sentence and streamed into the WAV file, so memory
stays flat; progress counts characters done. Heavy imports happen inside the command so
``edgegen --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from edgegen.cli.options import examples
from edgegen.errors import InputFileError, UsageError


def convert_voice(src: Path, name: str | None, quantize: int | None, force: bool) -> Path:
    """``edgegen convert VOICE.onnx`` → store artifact (the lead's convert command calls this)."""
    from edgegen.speech.convert import convert_to_store

    src = Path(src)
    if name is None:
        name = src.name.removesuffix(".onnx").lower()
    return convert_to_store(src, name, quantize=quantize, force=force)


def _read_text(text: str | None, file: Path | None) -> str:
    if (text is None) == (file is None):
        raise UsageError("give the text to speak either as TEXT or with -f FILE (one of them)")
    if file is None:
        return text
    try:
        return sys.stdin.read() if str(file) == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read text file {str(file)!r}: {e}") from e


@click.command(
    "speak",
    epilog=examples(
        'edgegen speak "Hello there. It is 5 past 9." -o hello.wav --timings hello.srt',
        "edgegen speak -f story.txt -o story.wav --speed 0.9",
        'edgegen speak "Bonjour." --voice ~/voices/fr_FR-siwis-medium.onnx -o bonjour.wav',
    ),
)
@click.argument("text", required=False)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(path_type=Path),
    help="Read text from FILE ('-' = stdin).",
)
@click.option(
    "--voice",
    envvar="EDGEGEN_VOICE",
    default=None,
    help="Store name, artifact folder or VOICE.onnx (default: joe).",
)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Speaking rate (0.25-4).")
@click.option("--speaker", type=int, default=None, help="Speaker id for multi-speaker voices.")
@click.option(
    "--noise-scale", type=float, default=None, help="Voice variation (default: the voice's own)."
)
@click.option(
    "--noise-w", type=float, default=None, help="Timing variation (default: the voice's own)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for the noise.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("speech.wav"),
    show_default=True,
    help="Audio file: .wav, .flac, .mp3, .m4a, .aac, .ogg or .opus.",
)
@click.option(
    "--timings",
    type=click.Path(path_type=Path),
    default=None,
    help="Write word timings (.srt, .vtt or .json).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
def speak(text, file, voice, speed, speaker, noise_scale, noise_w, seed, output, timings, quiet):  # fmt: skip
    """Speak TEXT (or the text of -f FILE) into an audio file, with word timings."""
    from edgegen.speech import load_voice, speak_to_file
    from edgegen.speech.audiofile import check_audio_path
    from edgegen.timings import check_timings_path

    started = time.perf_counter()
    content = _read_text(text, file)
    check_audio_path(output)  # before the voice loads
    if timings is not None:
        check_timings_path(timings)
    v = load_voice(voice, notify=lambda msg: click.echo(msg, err=True))
    show = not quiet and sys.stderr.isatty()
    options = dict(
        speed=speed, noise_scale=noise_scale, noise_w=noise_w, speaker=speaker, seed=seed
    )
    with _progress(show) as on_chunk:
        seconds, n_words = speak_to_file(v, content, output, timings, on_chunk, **options)
    if not quiet:
        took = time.perf_counter() - started
        click.echo(
            f"wrote {output} ({seconds:.1f} s, {n_words} words) in {took:.1f} s, "
            f"{seconds / max(took, 1e-9):.0f}x real time",
            err=True,
        )


@contextlib.contextmanager
def _progress(show: bool):
    """Yield an ``on_chunk(seconds)`` callback; with ``show`` it draws a rich progress bar in
    seconds of audio made."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("speaking"), BarColumn(), TextColumn("{task.fields[audio]:.1f} s audio"),
        TimeElapsedColumn(), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("speak", total=None, audio=0.0)
        yield lambda made: progress.update(task, advance=1, audio=made)
