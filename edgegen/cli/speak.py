"""``edgegen speak``: text to a WAV file, with optional word timings (.srt / .vtt / .json).

Long texts are synthesized sentence by sentence and streamed into the WAV file, so memory
stays flat; progress counts characters done. Heavy imports happen inside the command so
``edgegen --help`` stays instant.
"""

from __future__ import annotations

import sys
import time
import wave
from pathlib import Path

import click

from edgegen.cli.options import examples
from edgegen.errors import InputFileError, OutputError, UsageError


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
    help="WAV file to write.",
)
@click.option(
    "--timings",
    type=click.Path(path_type=Path),
    default=None,
    help="Write word timings (.srt, .vtt or .json).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
def speak(text, file, voice, speed, speaker, noise_scale, noise_w, seed, output, timings, quiet):  # fmt: skip
    """Speak TEXT (or the text of -f FILE) into a WAV file, with word timings."""
    from edgegen.fileio import atomic_path
    from edgegen.speech import load_voice
    from edgegen.timings import WRITERS, Word, write_timings

    started = time.perf_counter()
    content = _read_text(text, file)
    if timings is not None and timings.suffix.lower() not in WRITERS:
        raise UsageError(
            f"timings file {str(timings)!r} has extension {timings.suffix!r}; "
            f"use one of {', '.join(WRITERS)}"
        )
    v = load_voice(voice, notify=lambda msg: click.echo(msg, err=True))
    words: list[Word] = []
    offset = 0.0
    show = not quiet and sys.stderr.isatty()
    with atomic_path(output, suffix=".wav") as tmp:
        try:
            wav = wave.open(str(tmp), "wb")
        except OSError as e:
            raise OutputError(f"cannot write {str(output)!r}: {e}") from e
        with wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(v.sample_rate)
            chunks = v.stream(
                content, speed=speed, noise_scale=noise_scale, noise_w=noise_w,
                speaker=speaker, seed=seed,
            )  # fmt: skip
            for chunk in _progress(chunks, len(content), show):
                pcm = (chunk.audio.clip(-1, 1) * 32767).astype("<i2")
                wav.writeframes(pcm.tobytes())
                words += [Word(w.word, w.start + offset, w.end + offset) for w in chunk.words]
                offset += chunk.duration
    if timings is not None:
        write_timings(timings, words)
    if not quiet:
        took = time.perf_counter() - started
        click.echo(
            f"wrote {output} ({offset:.1f} s, {len(words)} words) in {took:.1f} s, "
            f"{offset / max(took, 1e-9):.0f}x real time",
            err=True,
        )


def _progress(chunks, total_chars: int, show: bool):
    """Yield chunks; with ``show`` draw a rich progress bar in seconds of audio made."""
    if not show:
        yield from chunks
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("speaking"), BarColumn(), TextColumn("{task.fields[audio]:.1f} s audio"),
        TimeElapsedColumn(), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("speak", total=None, audio=0.0)
        made = 0.0
        for chunk in chunks:
            made += chunk.duration
            progress.update(task, advance=1, audio=made)
            yield chunk
