"""``edgegen upscale IMAGE``: Real-ESRGAN on MLX, tiled, into a new image file.

Inputs are checked before the model runs (the image is read, the output format known, the
scale offered by the model, the memory needed available); the output is written atomically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from edgegen.cli.options import examples
from edgegen.errors import OutputError, UsageError

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def read_picture(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB, or (H, W, 4) RGBA when the file has transparency."""
    from edgegen.editing import read_image

    return read_image(path, alpha=True)


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"output {str(path)!r} has extension {path.suffix!r}; use one of {', '.join(FORMATS)}"
        )
    from edgegen.fileio import check_writable

    check_writable(path)
    return fmt


def save_picture(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    from edgegen.fileio import atomic_path

    fmt = output_format(path)
    pic = Image.fromarray(image)
    if fmt == "JPEG" and pic.mode == "RGBA":
        pic = pic.convert("RGB")
    with atomic_path(path, suffix=path.suffix) as tmp:
        try:
            pic.save(tmp, format=fmt, **({"quality": 95} if fmt != "PNG" else {}))
        except OSError as e:
            raise OutputError(f"cannot write {str(path)!r}: {e}") from e


@click.command(
    "upscale",
    epilog=examples(
        "edgegen upscale photo.png                      # ×4 with the default upscaler",
        "edgegen upscale frame.png --scale 2 -o frame-2x.png",
        "edgegen upscale art.png --model realesrgan-x4plus --tile 128",
    ),
)
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--scale", type=click.Choice(["2", "3", "4"]), default=None,
    help="Upscaling factor (default: the model's own).",
)  # fmt: skip
@click.option(
    "--model", "model_name", envvar="EDGEGEN_UPSCALER", default=None,
    help="Store name, artifact folder or ncnn MODEL.param (default: realesr-animevideov3).",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None,
    help="Image file to write (.png, .jpg, .webp; default: IMAGE-xS.png beside IMAGE).",
)  # fmt: skip
@click.option(
    "--tile", type=click.IntRange(16, 4096), default=None,
    help="Input pixels per tile side; smaller uses less memory (default: per model).",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress display.")
def upscale(image: Path, scale: str | None, model_name: str | None, output: Path | None,
            tile: int | None, quiet: bool) -> None:  # fmt: skip
    """Upscale IMAGE with a Real-ESRGAN model (tiled, so large images fit in memory)."""
    from edgegen.upscale import load_upscaler

    started = time.perf_counter()
    picture = read_picture(image)
    if output is not None:
        output_format(output)
    up = load_upscaler(model_name, notify=lambda msg: click.echo(msg, err=True))
    s = up.check_scale(int(scale) if scale else None)
    output = output or image.with_name(f"{image.stem}-x{s}.png")
    output_format(output)
    if output.resolve() == image.resolve():
        raise UsageError(f"output {str(output)!r} is the input image; choose another -o")
    show = not quiet and sys.stderr.isatty()
    if show:
        from edgegen.cli.progress import step_progress

        with step_progress() as progress:
            task = progress.add_task(f"upscaling ×{s}", total=None)

            def on_tile(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = up.upscale(picture, s, tile=tile, on_tile=on_tile)
    else:
        result = up.upscale(picture, s, tile=tile)
    save_picture(output, result)
    if not quiet:
        h, w = picture.shape[:2]
        click.echo(
            f"wrote {output} ({w}x{h} → {result.shape[1]}x{result.shape[0]}, ×{s} with "
            f"{up.name}) in {time.perf_counter() - started:.1f}s",
            err=True,
        )
