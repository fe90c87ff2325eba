"""``edgegen render``: script or storyboard -> vertical MP4 with voiceover, captions and music."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgegen.cli.options import SIZE, examples
from edgegen.video.prompts import STYLES

if TYPE_CHECKING:
    from edgegen.video.render import Event, ImageSource, RenderReport, Speaker


def load_images(model: str | None) -> ImageSource:
    """The Stable Diffusion image source; no model means the built-in default model."""
    from edgegen.pipelines import StableDiffusionImageSource  # provided by the image engine

    return StableDiffusionImageSource.load(model)


def load_speaker(voice: str | None) -> Speaker:
    from edgegen.speech import load_voice

    return load_voice(voice)


def load_upscaler(name: str | None):
    from edgegen.upscale import load_upscaler as load

    return load(name)


STAGES = {
    "speech": "voiceover",
    "images": "images",
    "upscale": "upscaling",
    "audio": "soundtrack",
    "frames": "frames",
    "subtitles": "subtitles",
}


@click.command(
    "render",
    epilog=examples(
        "edgegen render examples/quickstart.md -o quickstart.mp4",
        "edgegen render examples/storyboard.toml --music theme.mp3 -o story.mp4",
        "edgegen render script.md --model sd15-q8 --draft -o draft.mp4",
    ),
)
@click.argument("script", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Output MP4 (default: the script's name with .mp4). .srt and .vtt go beside it.",
)
@click.option("--model", "-m", envvar="EDGEGEN_MODEL", help="Image model: store name or folder.")
@click.option("--voice", "-v", envvar="EDGEGEN_VOICE", help="Voice (default: the storyboard's).")
@click.option("--style", "-s", type=click.Choice(list(STYLES)), default=None, help="Style preset.")
@click.option(
    "--music",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Music file, looped and ducked under the voice.",
)
@click.option("--draft", is_flag=True, help="Fast preview encode (lower quality).")
@click.option("--hardware", is_flag=True, help="macOS: encode with VideoToolbox (else x264).")
@click.option("--fps", type=click.IntRange(1, 120), default=None, help="Frames per second.")
@click.option("--size", type=SIZE, default=None, help="WIDTHxHEIGHT (default 1080x1920).")
@click.option("--seed", type=int, default=None, help="Video seed (scene seeds derive from it).")
@click.option("--captions/--no-captions", default=None, help="Burn in word-timed captions.")
@click.option(
    "--upscale/--no-upscale", default=True, show_default=True,
    help="Upscale scene images more than 2x smaller than the frame (Real-ESRGAN).",
)  # fmt: skip
@click.option(
    "--upscaler", envvar="EDGEGEN_UPSCALER", default=None,
    help="Upscaler: store name, folder or MODEL.param (default: realesr-animevideov3).",
)  # fmt: skip
def render(
    script: Path,
    output: Path | None,
    model: str | None,
    voice: str | None,
    style: str | None,
    music: Path | None,
    draft: bool,
    hardware: bool,
    fps: int | None,
    size: tuple[int, int] | None,
    seed: int | None,
    captions: bool | None,
    upscale: bool,
    upscaler: str | None,
) -> None:
    """Render SCRIPT (.md/.txt: one paragraph per scene; or a .toml storyboard) to a video."""
    from edgegen.cli.progress import console, step_progress
    from edgegen.video import storyboard
    from edgegen.video.render import render as render_video

    # fail on bad input (the file and the overrides) before loading any model
    board = storyboard.load(script)
    width, height = size or (board.width, board.height)
    overrides = dict(style=style, music=music, seed=seed, fps=fps, captions=captions)
    storyboard.validate(board.with_overrides(**overrides, width=width, height=height))
    images = load_images(model)
    speaker = load_speaker(voice or board.voice)
    if upscaler is not None and not upscale:
        from edgegen.errors import UsageError

        raise UsageError("--upscaler and --no-upscale contradict each other; pass one of them")
    upscaling = load_upscaler(upscaler) if upscale else None
    with step_progress() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks: dict[str, int] = {}

        def on_event(e: Event) -> None:
            if e.stage not in tasks:
                tasks[e.stage] = progress.add_task(STAGES.get(e.stage, e.stage), total=e.total)
            progress.update(tasks[e.stage], completed=e.done, total=e.total)

        report = render_video(
            script,
            output,
            images=images,
            speaker=speaker,
            style=style,
            music=music,
            draft=draft,
            hardware=hardware,
            seed=seed,
            fps=fps,
            size=size,
            captions=captions,
            progress=on_event,
            upscaler=upscaling,
        )
    for w in {str(w.message): w for w in caught}.values():
        console.print(f"[yellow]warning:[/yellow] {w.message}")
    for line in summary(report):
        console.print(line)


def summary(report: RenderReport) -> list[str]:
    """The closing lines: what was made, how long each stage took, what went wrong."""
    w, h = report.size
    lines = [
        f"[bold green]wrote[/] {report.path}  ({report.duration:.1f} s, {w}x{h}@{report.fps}, "
        f"{report.bytes / 1e6:.1f} MB, {report.codec}) + "
        + ", ".join(p.suffix for p in report.subtitles),
        "stages: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in report.stage_seconds.items())
        + f"; total {sum(report.stage_seconds.values()):.1f}s",
        f"images: {report.generated} generated, {report.cache_hits} from cache, "
        f"{len(report.failed)} failed"
        + (
            f", {sum(1 for s in report.scenes if s.upscaled)} upscaled"
            if "upscale" in report.stage_seconds
            else ""
        ),
    ]
    for s in report.scenes:
        if s.image == "fallback":
            lines.append(
                f"[yellow]warning:[/] scene {s.index + 1} (line {s.line}) shows a placeholder "
                f"card: {s.error}"
            )
    if report.missing_glyphs:
        lines.append(
            f"[yellow]warning:[/] no installed font has {report.missing_glyphs!r}; "
            "install a font that covers them (e.g. Noto Sans CJK)"
        )
    return lines
