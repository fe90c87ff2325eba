"""``edgegen convert SRC --to mlx``: a diffusion model, a Piper voice or an ncnn upscaler →
the model store.

Thin on purpose: the work is in ``edgegen.convert``; this shows per-component progress and a
summary, and dispatches ``.onnx`` voices to the speech converter and ``.param`` upscalers to
``edgegen.upscale``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgegen.cli.options import examples
from edgegen.errors import UsageError

if TYPE_CHECKING:  # the manifest imports MLX, which `edgegen --help` must not load
    from edgegen.converters.manifest import Component


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # unreachable; keeps type checkers content


def precision(component: Component) -> str:
    """``float16`` or ``4-bit g64 (float16)`` for a manifest component entry."""
    quant = component.quantization
    if quant is not None and quant.layers:
        return f"{quant.bits}-bit g{quant.group_size} ({component.dtype})"
    return component.dtype


def _convert_voice(src: str, name: str | None, quantize: int | None, force: bool) -> None:
    try:
        from edgegen.speech import convert_voice
    except ImportError:
        try:
            from edgegen.cli.speak import convert_voice
        except ImportError as e:
            raise UsageError("this edgegen cannot convert voices (no speech converter)") from e
    path = convert_voice(Path(src), name, quantize, force)
    click.echo(f"converted voice into {path}")


def _convert_upscaler(src: str, name: str | None, dtype: str, force: bool) -> None:
    from edgegen.converters.manifest import Manifest
    from edgegen.upscale import convert_upscaler

    if dtype == "bfloat16":
        raise UsageError("upscalers are stored in float16 or float32, not bfloat16")
    t = time.perf_counter()
    path = convert_upscaler(Path(src), name, dtype=dtype, force=force)
    m = Manifest.read(path)
    entry = m.mlx.components["net"]
    cfg = m.config
    click.echo(
        f"converted {m.family} ×{cfg['scale']} (output ×{cfg['output_scale']}, "
        f"{entry.parameters:,} parameters, {entry.dtype}) into {path} "
        f"({human_bytes(entry.bytes)}) in {time.perf_counter() - t:.1f}s; "
        f"quality: {m.quality['psnr_vs_bicubic_db']:.1f} dB from bicubic on the test card; "
        f"use it with edgegen upscale --model {m.name}"
    )


@click.command(
    "convert",
    epilog=examples(
        "edgegen convert ~/models/stable-diffusion-v1-5 --to mlx --quantize 8 --name sd15-q8",
        "edgegen convert ~/Downloads/sd_xl_base_1.0.safetensors --to mlx",
        "edgegen convert realesrgan-x4plus.param --to mlx",
    ),
)
@click.argument("src")
@click.option("--to", "target", type=click.Choice(["mlx"]), default="mlx", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["float16", "bfloat16", "float32"]),
    default="float16",
    show_default=True,
    help="Precision of the weights that are not quantized.",
)
@click.option(
    "--quantize", "-q", type=click.Choice(["8", "4"]), default=None, help="Quantize to N bits."
)
@click.option(
    "--group-size",
    type=click.Choice(["32", "64", "128"]),
    default="64",
    show_default=True,
    help="Weights sharing one quantization scale.",
)
@click.option("--name", default=None, help="Store name (default: source name + precision).")
@click.option("--force", is_flag=True, help="Replace a model of the same name.")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Render a fixed prompt with source and result and record the PSNR.",
)
@click.option("--check-steps", type=click.IntRange(1, 50), default=4, show_default=True)
@click.option("--min-psnr", type=float, default=None, help="Fail (exit 7) below this PSNR.")
@click.option(
    "--config-from",
    default=None,
    help="Single-file checkpoints: diffusers folder or cached id giving configs and tokenizers "
    "(default: the standard configuration of the detected family).",
)
@click.option(
    "--prediction-type",
    type=click.Choice(["epsilon", "v_prediction"]),
    default=None,
    help="Single-file checkpoints: what the UNet predicts (SD 2.x 768 models: v_prediction).",
)
def convert(
    src: str,
    target: str,
    dtype: str,
    quantize: str | None,
    group_size: str,
    name: str | None,
    force: bool,
    check: bool,
    check_steps: int,
    min_psnr: float | None,
    config_from: str | None,
    prediction_type: str | None,
) -> None:
    """Convert SRC (a diffusers folder, a cached Hugging Face repo id, a single-file
    .safetensors checkpoint, a Piper VOICE.onnx, or a Real-ESRGAN ncnn MODEL.param with its
    MODEL.bin) into the local model store."""
    bits = int(quantize) if quantize else None
    if src.lower().endswith(".onnx"):
        _convert_voice(src, name, bits, force)
        return
    if src.lower().endswith(".param"):
        if bits:
            raise UsageError("upscalers are not quantized (1-33 MB); drop --quantize")
        _convert_upscaler(src, name, dtype, force)
        return

    from rich.table import Table

    from edgegen.cli.progress import console
    from edgegen.convert import ConvertOptions
    from edgegen.convert import convert as run

    options = ConvertOptions(
        dtype=dtype,
        quantize=bits,
        group_size=int(group_size),
        name=name,
        force=force,
        check=check,
        check_steps=check_steps,
        min_psnr=min_psnr,
    )
    checkpoint = {
        k: v
        for k, v in (("config_from", config_from), ("prediction_type", prediction_type))
        if v is not None
    }
    status = console.status("reading the source")

    def progress(event: str, component: str, details: dict[str, Any]) -> None:
        if event == "hash":
            status.update(f"hashing {details['files']} source files")
        elif event == "component":
            status.update(f"converting {component}")
        elif event == "component-done":
            entry = details["entry"]
            console.print(
                f"  [green]✓[/green] {component:<15} {precision(entry):<22} "
                f"{human_bytes(entry.bytes):>9}  {details['seconds']:.1f}s"
            )
        elif event == "quality":
            status.update(f"quality check: rendering {details['steps']} steps twice")

    with status, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(src, options, progress, checkpoint)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}")
    if result.up_to_date:
        console.print(f"{result.name} is up to date ({result.path}); --force converts again")
        return
    m = result.manifest
    table = Table(title=f"{result.name} ({m.family})", show_edge=False)
    for col in ("component", "precision", "size"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for comp, entry in m.mlx.components.items():
        table.add_row(comp, precision(entry), human_bytes(entry.bytes))
    console.print(table)
    quality = m.quality
    if quality:
        value = quality["psnr_db"]
        shown = "identical" if value is None else f"{value:.1f} dB"
        console.print(f"quality: PSNR {shown} against the float32 source")
    console.print(
        f"wrote {result.path} ({human_bytes(m.bytes or 0)}) in {result.seconds:.1f}s; "
        f"use it with --model {result.name}"
    )
