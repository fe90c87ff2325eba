"""``edgegen generate``: prompt → PNG(s) with the generation parameters embedded."""

from __future__ import annotations

import secrets
import warnings
from dataclasses import replace
from pathlib import Path

import click

from edgegen.cli.options import SIZE, examples
from edgegen.errors import ModelNotFoundError, UsageError
from edgegen.params import GenerationParams


def _outputs(output: Path | None, seeds: list[int]) -> list[Path]:
    if output is None:
        return [Path(f"edgegen-{s}.png") for s in seeds]
    if output.suffix.lower() != ".png":
        raise UsageError(f"output {str(output)!r} must end in .png")
    if len(seeds) == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{s}{output.suffix}") for s in seeds]


@click.command(
    "generate",
    epilog=examples(
        'edgegen generate "a red sun in the top left over a calm sea at sunset" -o sun.png',
        'edgegen generate "a red boat" -i sun.png --mask boat-mask.png    # inpainting',
        'edgegen generate "more sea and sky" -i sun.png --extend-to 576x1024    # outpainting',
    ),
)
@click.argument("prompt", required=False)
@click.option(
    "--from-png",
    "from_png",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Take prompt, negative, steps, sampler, CFG, seed and size from the 'parameters' "
    "text of a PNG (edgegen, A1111, Forge, Fooocus); options given here override them.",
)
@click.option(
    "--model", "-m", envvar="EDGEGEN_MODEL", help="Model folder, store name or cached repo id."
)
@click.option("--negative", "-n", default=None, help="Negative prompt.")
@click.option("--seed", type=int, default=None, help="Random seed (default: random, printed).")
@click.option(
    "--steps",
    type=int,
    default=None,
    help=f"Sampling steps (default: the model's, else {GenerationParams.steps}; Turbo: 1).",
)
@click.option(
    "--guidance",
    "-g",
    type=float,
    default=None,
    help=(
        f"CFG scale; ≤ 1 disables guidance (default: the model's, "
        f"else {GenerationParams.guidance:g})."
    ),
)
@click.option(
    "--scheduler",
    "-s",
    default=None,
    help="ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, lcm (default: the model's).",
)
@click.option(
    "--size",
    type=SIZE,
    default=None,
    help="WIDTHxHEIGHT, multiples of 64 (default: 9:16 portrait at the model's scale).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Images to make (seeds seed, seed+1, …).",
)
@click.option(
    "--clip-skip",
    type=click.IntRange(0, 12),
    default=None,
    help="Skip final CLIP layers (1 = penultimate).",
)
@click.option(
    "--init-image",
    "-i",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Start from this picture (img2img; with --mask, inpainting; with --extend, outpainting).",
)
@click.option(
    "--strength",
    type=float,
    default=None,
    help="How much of --init-image is redrawn, 0..1 (default: 0.75; 1 with --mask or --extend).",
)
@click.option(
    "--mask",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Inpainting: repaint where this picture (the size of --init-image) is white.",
)
@click.option(
    "--extend",
    default=None,
    help="Outpainting: grow --init-image by SIDE:PIXELS (left, right, up, down), e.g. down:256.",
)
@click.option(
    "--extend-to",
    "extend_to",
    type=SIZE,
    default=None,
    help="Outpainting: grow --init-image evenly to WIDTHxHEIGHT (e.g. a square to 576x1024).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Output PNG (default: edgegen-SEED.png).",
)
def generate(
    prompt: str | None,
    from_png: Path | None,
    model: str | None,
    negative: str | None,
    seed: int | None,
    steps: int | None,
    guidance: float | None,
    scheduler: str | None,
    size: tuple[int, int] | None,
    count: int,
    clip_skip: int | None,
    init_image: Path | None,
    strength: float | None,
    mask: Path | None,
    extend: str | None,
    extend_to: tuple[int, int] | None,
    output: Path | None,
) -> None:
    """Generate images from PROMPT (or from the settings a PNG recorded, --from-png)."""
    from edgegen.cli.progress import StageTimer, console, step_progress

    model_from_png = None
    if from_png is not None:
        from edgegen.pngparams import read_png_parameters

        png = read_png_parameters(from_png)
        prompt = png.prompt if prompt is None else prompt
        negative = png.negative if negative is None else negative
        steps = png.steps if steps is None else steps
        guidance = png.guidance if guidance is None else guidance
        scheduler = png.sampler if scheduler is None else scheduler
        seed = png.seed if seed is None else seed
        if size is None and png.width and png.height:
            size = (png.width, png.height)
        clip_skip = png.clip_skip if clip_skip is None else clip_skip
        if model is None and png.model:
            model = model_from_png = png.model
        if png.ignored:
            console.print(
                f"[yellow]note:[/yellow] not applied from the PNG: {', '.join(png.ignored)}",
                soft_wrap=True,  # one line, however narrow the terminal
            )
    if prompt is None:
        raise UsageError("no prompt: give PROMPT, or --from-png IMAGE to take it from a PNG")
    negative = negative or ""
    seed = secrets.randbelow(2**31) if seed is None else seed
    edit = _edit(init_image, mask, extend, extend_to, size)
    if edit is not None:
        size = edit.size
        strength = edit.default_strength if strength is None else strength
    elif strength is not None:
        raise UsageError("--strength applies to an --init-image; give one, or drop --strength")
    width, height = size if size else (None, None)
    params = GenerationParams(
        prompt,
        negative,
        GenerationParams.steps if steps is None else steps,  # validated now, set after load
        GenerationParams.guidance if guidance is None else guidance,
        scheduler,
        seed,
        width,
        height,
        clip_skip,
        strength,
    )
    params.validate()  # before loading anything, so bad input fails fast
    seeds = [seed + i for i in range(count)]
    paths = _outputs(output, seeds)

    import mlx.core as mx

    from edgegen import __version__
    from edgegen.images import save_png
    from edgegen.params import a1111_parameters
    from edgegen.pipelines import load_pipeline

    timer = StageTimer()
    with timer.stage("load"):
        try:
            sd = load_pipeline(model)
        except ModelNotFoundError as e:
            if model_from_png is None:
                raise
            raise ModelNotFoundError(
                f"{e}; the PNG was made with model {model_from_png!r}: pass --model"
            ) from e
        sampler = sd.sampler_name(scheduler)
        params = sd.resolve_size(params)
        chosen = sd.settings(steps, guidance)
        params = replace(params, steps=chosen[0], guidance=chosen[1])
    from_model = [
        f"{name} {value:g}"
        for name, given, value in zip(("steps", "guidance"), (steps, guidance), chosen, strict=True)
        if given is None and name in sd.defaults
    ]
    if from_model:
        console.print(f"using the model's defaults: {', '.join(from_model)}")
    with step_progress() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for image_seed, path in zip(seeds, paths, strict=True):
            p = GenerationParams(**{**params.__dict__, "seed": image_seed})
            task = progress.add_task(f"seed {image_seed}", total=p.steps)
            latents = None
            with timer.stage("denoise"):
                for step in sd.denoise(p, edit=edit):
                    mx.eval(step.latents)
                    latents = step.latents
                    progress.update(
                        task, completed=min(step.index + 1, step.total), total=step.total
                    )
            with timer.stage("decode"):
                image = sd.decode(latents, edit)[0]
            text = a1111_parameters(p, p.width, p.height, sampler, sd.name, __version__)
            with timer.stage("save"):
                save_png(path, image, text)
            progress.console.print(f"[green]wrote[/green] {path}")
        for w in caught:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
    console.print(f"{count} image(s) {params.width}x{params.height}, {sampler}: {timer.summary()}")


def _edit(
    init_image: Path | None,
    mask: Path | None,
    extend: str | None,
    extend_to: tuple[int, int] | None,
    size: tuple[int, int] | None,
):
    """The edit the options ask for (None: text to image), checked before any model loads."""
    from edgegen import editing

    needs = [
        name
        for name, v in (("--mask", mask), ("--extend", extend), ("--extend-to", extend_to))
        if v
    ]
    if init_image is None:
        if needs:
            raise UsageError(f"{needs[0]} needs an --init-image to edit")
        return None
    if len(needs) > 1:
        raise UsageError(f"{needs[0]} and {needs[1]} cannot be combined; choose one")
    image = editing.read_image(init_image, "init image")
    h, w = image.shape[:2]
    if extend or extend_to:
        pads = editing.parse_extend(extend) if extend else editing.extend_to(w, h, extend_to)
        out_w = w + pads.get("left", 0) + pads.get("right", 0)
        out_h = h + pads.get("up", 0) + pads.get("down", 0)
        if out_w % 64 or out_h % 64:
            raise UsageError(
                f"extending {w}x{h} by {extend or 'that'} gives {out_w}x{out_h}; the result "
                "must be multiples of 64 wide and tall (adjust PIXELS, or use --extend-to)"
            )
        return editing.extend(image, pads)
    target = size or (max(64, round(w / 64) * 64), max(64, round(h / 64) * 64))
    m = editing.read_mask(mask, (w, h)) if mask else None
    if m is not None and target != (w, h):
        import numpy as np
        from PIL import Image

        m = np.asarray(Image.fromarray(m).resize(target, Image.NEAREST), dtype=np.float32)
    return editing.Edit(editing.fit(image, *target), m)
