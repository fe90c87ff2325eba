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
        'edgegen generate "a lighthouse on a cliff, watercolor" --model sd15-q8 --seed 7 --count 4',
        "edgegen generate --from-png sun.png --steps 30    # the PNG's settings, 30 steps",
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
                for step in sd.denoise(p):
                    mx.eval(step.latents)
                    latents = step.latents
                    progress.advance(task)
            with timer.stage("decode"):
                image = sd.decode(latents)[0]
            text = a1111_parameters(p, p.width, p.height, sampler, sd.name, __version__)
            with timer.stage("save"):
                save_png(path, image, text)
            progress.console.print(f"[green]wrote[/green] {path}")
        for w in caught:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
    console.print(f"{count} image(s) {params.width}x{params.height}, {sampler}: {timer.summary()}")
