"""``edgegen generate``: prompt → PNG(s) with the generation parameters embedded."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from edgegen.cli.options import SIZE, examples
from edgegen.errors import ModelNotFoundError
from edgegen.params import GenerationParams


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
    from edgegen.generate import plan_generate, resolve, run_generate

    plan = plan_generate(
        prompt,
        negative=negative,
        seed=seed,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        size=size,
        count=count,
        clip_skip=clip_skip,
        init_image=init_image,
        strength=strength,
        mask=mask,
        extend=extend,
        extend_to=extend_to,
        output=output,
    )  # fmt: skip  (every input checked before anything loads)

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
        params, sampler = resolve(plan, sd)
    sd.check_memory(params.width, params.height, 1, params.guidance > 1.0)  # before any work
    from_model = [
        f"{name} {value:g}"
        for name, given, value in zip(
            ("steps", "guidance"), (steps, guidance), (params.steps, params.guidance), strict=True
        )
        if given is None and name in sd.defaults
    ]
    if from_model:
        console.print(f"using the model's defaults: {', '.join(from_model)}")
    with step_progress() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks: dict[int, int] = {}

        def on_step(image_seed: int, done: int, total: int) -> None:
            if image_seed not in tasks:
                tasks[image_seed] = progress.add_task(f"seed {image_seed}", total=total)
            progress.update(tasks[image_seed], completed=done, total=total)

        def on_image(path: Path) -> None:
            progress.console.print(f"[green]wrote[/green] {path}")

        run_generate(plan, sd, on_step, on_image, timer)
        for w in caught:
            console.print(f"[yellow]warning:[/yellow] {w.message}")
    console.print(f"{count} image(s) {params.width}x{params.height}, {sampler}: {timer.summary()}")
