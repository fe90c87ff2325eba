"""Generation parameters: validation and the A1111 ``parameters`` text recorded in PNGs."""

from __future__ import annotations

from dataclasses import dataclass

from edgegen.errors import UsageError

SIZE_MULTIPLE = 64


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    negative: str = ""
    steps: int = 20
    guidance: float = 7.5  # ≤ 1 disables classifier-free guidance (no unconditional pass)
    sampler: str | None = None  # None: the sampler the model's scheduler config names
    seed: int = 0
    width: int | None = None  # None: the model's default 9:16 portrait size
    height: int | None = None
    clip_skip: int | None = None  # skip this many final CLIP layers (1 = penultimate)
    strength: float | None = None  # editing: how much of the picture is redrawn (0..1)

    def validate(self) -> None:
        if self.steps < 1:
            raise UsageError(f"steps must be ≥ 1, got {self.steps}")
        if self.guidance < 0:
            raise UsageError(f"guidance must be ≥ 0, got {self.guidance}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and (value < SIZE_MULTIPLE or value % SIZE_MULTIPLE):
                raise UsageError(
                    f"{name} {value} is not a positive multiple of {SIZE_MULTIPLE} "
                    f"(e.g. {max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)})"
                )
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise UsageError(
                f"strength {self.strength:g} is outside [0, 1] (0 keeps the picture, 1 redraws it)",
                option="strength",
            )
        if self.clip_skip is not None and self.clip_skip < 0:
            raise UsageError(f"clip_skip must be ≥ 0, got {self.clip_skip}")
        if self.seed < 0 or self.seed >= 2**63:
            raise UsageError(f"seed must be in [0, 2**63), got {self.seed}")


def portrait_size(native: int) -> tuple[int, int]:
    """Default 9:16 portrait (width, height) at a model's native scale, multiples of 64.

    Width is 3/4 of the native side, height 16/9 of that: 512 → 384×704, 768 → 576×1024,
    1024 → 768×1344, so the pixel count stays close to the training resolution's.
    """

    def r64(x: float) -> int:
        return max(SIZE_MULTIPLE, round(x / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    width = r64(native * 3 / 4)
    return width, r64(width * 16 / 9)


def a1111_parameters(
    p: GenerationParams, width: int, height: int, sampler: str, model: str, version: str
) -> str:
    """The ``parameters`` text chunk in the AUTOMATIC1111 convention most tools read."""
    lines = [p.prompt]
    if p.negative:
        lines.append(f"Negative prompt: {p.negative}")
    fields = [
        f"Steps: {p.steps}",
        f"Sampler: {sampler}",
        f"CFG scale: {p.guidance:g}",
        f"Seed: {p.seed}",
        f"Size: {width}x{height}",
        f"Model: {model}",
    ]
    if p.strength is not None:
        fields.append(f"Denoising strength: {p.strength:g}")
    if p.clip_skip:
        fields.append(f"Clip skip: {p.clip_skip + 1}")  # A1111 counts the last layer as 1
    fields.append(f"Version: edgegen {version}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the text encoder's context; the message says what was dropped.

    ``prompt`` and ``dropped`` let a caller that added text of its own (the video renderer's
    style terms) tell whether any of the user's words were lost."""

    def __init__(self, message: str, prompt: str = "", dropped: str = "") -> None:
        super().__init__(message)
        self.prompt, self.dropped = prompt, dropped
