"""Read the generation parameters that image tools embed in a PNG, to make the image again.

edgegen, AUTOMATIC1111, Forge and Fooocus (in its A1111 scheme) write a ``parameters`` text
chunk in A1111's layout::

    a lighthouse on a cliff, watercolor
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, ...

The prompt runs up to ``Negative prompt:`` (both may span lines); the last line holds
``Key: value`` fields, a value in double quotes when it contains commas. Fooocus's own scheme
writes JSON there instead (``prompt``, ``negative_prompt``, ``steps``, ``sampler``,
``scheduler``, ``guidance_scale``, ``seed``, ``resolution``); both are read.

Fields that change the picture and that edgegen cannot apply (hires fix, LoRA, variation seeds
...) are returned in :attr:`PngParameters.ignored`, so the caller can say so; an unknown sampler
is an error, since the image would be another one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgegen.errors import InputFileError

# A1111's sampler labels (and Fooocus's k-diffusion names) → edgegen's samplers. A "Karras"
# schedule type turns dpmpp_2m into dpmpp_2m_karras; other samplers have no Karras variant here.
SAMPLER_NAMES = {
    "ddim": "ddim",
    "euler": "euler",
    "euler a": "euler_a",
    "euler_a": "euler_a",
    "euler_ancestral": "euler_a",
    "dpm++ 2m": "dpmpp_2m",
    "dpmpp_2m": "dpmpp_2m",
    "dpm++ 2m karras": "dpmpp_2m_karras",
    "dpmpp_2m_karras": "dpmpp_2m_karras",
    "lcm": "lcm",
}
LABELS = ("DDIM", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "LCM")
# Fields that only describe the image (or that edgegen takes another way): never "ignored".
_INFORMATIONAL = {
    "model", "model hash", "vae", "vae hash", "version", "schedule type", "steps", "sampler",
    "cfg scale", "seed", "size", "clip skip", "emphasis",
}  # fmt: skip
_FIELD = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class PngParameters:
    """What a PNG says it was made with; ``None`` where it does not say."""

    prompt: str
    negative: str = ""
    steps: int | None = None
    sampler: str | None = None  # an edgegen sampler name
    guidance: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None  # edgegen's count: 0 = the last layer
    model: str | None = None
    ignored: tuple[str, ...] = field(default=())  # fields edgegen does not apply


def read_png_parameters(path: Path) -> PngParameters:
    """The ``parameters`` chunk of the PNG at ``path``, parsed."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text = image.text.get("parameters") if hasattr(image, "text") else None
    except FileNotFoundError:
        raise InputFileError(f"image {str(path)!r} does not exist") from None
    except (OSError, UnidentifiedImageError) as e:
        raise InputFileError(f"image {str(path)!r} cannot be read as a PNG: {e}") from None
    if not text:
        raise InputFileError(
            f"image {str(path)!r} has no 'parameters' text chunk; edgegen, A1111, Forge and "
            "Fooocus write one"
        )
    return parse_parameters(text, str(path))


def parse_parameters(text: str, where: str = "parameters") -> PngParameters:
    """Parse an A1111-layout ``parameters`` text, or Fooocus's JSON form."""
    if text.lstrip().startswith("{"):
        return _parse_fooocus(text, where)
    lines = text.strip("\n").split("\n")
    fields: dict[str, str] = {}
    if lines and re.match(r"\s*Steps:", lines[-1]):
        fields = {k.strip(): _unquote(v.strip()) for k, v in _FIELD.findall(lines.pop())}
    prompt_lines, negative_lines, target = [], [], None
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].lstrip()
        (prompt_lines if target is None else target).append(line)
    lower = {k.lower(): v for k, v in fields.items()}
    sampler = lower.get("sampler")
    if sampler and lower.get("schedule type", "").lower() == "karras":
        sampler += " karras"
    clip_skip = _number(lower, "clip skip", int, where)
    return _parameters(
        lower, ("steps", "cfg scale", "seed"), where,
        prompt="\n".join(prompt_lines),
        negative="\n".join(negative_lines),
        sampler=_sampler(sampler, where),
        size=_size(lower.get("size"), where),
        clip_skip=None if clip_skip is None else clip_skip - 1,  # A1111 counts the last as 1
        model=lower.get("model"),
        ignored=tuple(k for k in fields if k.lower() not in _INFORMATIONAL),
    )  # fmt: skip


def _parameters(
    fields: dict[str, str], names: tuple[str, str, str], where: str, size: tuple, **given: Any
) -> PngParameters:
    """The parameters of one writer's ``fields``; ``names``: its keys for steps, guidance and
    seed, read as numbers (a bad one is a one-line error naming it)."""
    kinds = (int, float, int)
    steps, guidance, seed = (
        _number(fields, name, kind, where) for name, kind in zip(names, kinds, strict=True)
    )
    width, height = size
    return PngParameters(
        steps=steps, guidance=guidance, seed=seed, width=width, height=height, **given
    )


def _parse_fooocus(text: str, where: str) -> PngParameters:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InputFileError(f"{where}: parameters look like JSON but are not: {e}") from None
    if not isinstance(data, dict) or "prompt" not in data:
        raise InputFileError(f"{where}: JSON parameters without a 'prompt'")
    fields = {k.lower(): str(v) for k, v in data.items()}
    sampler = fields.get("sampler")
    if sampler and fields.get("scheduler", "").lower() == "karras":
        sampler += "_karras"
    resolution = re.findall(r"\d+", fields.get("resolution", ""))
    width, height = (
        (int(resolution[0]), int(resolution[1])) if len(resolution) == 2 else (None,) * 2
    )
    known = {"prompt", "negative_prompt", "steps", "sampler", "scheduler", "guidance_scale",
             "seed", "resolution", "base_model", "version", "full_prompt", "full_negative_prompt",
             "metadata_scheme"}  # fmt: skip
    return _parameters(
        fields, ("steps", "guidance_scale", "seed"), where,
        prompt=fields["prompt"],
        negative=fields.get("negative_prompt", ""),
        sampler=_sampler(sampler, where),
        size=(width, height),
        model=fields.get("base_model"),
        ignored=tuple(k for k in data if k.lower() not in known),
    )  # fmt: skip


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value) if "\\" in value else value[1:-1]
    return value


def _sampler(label: str | None, where: str) -> str | None:
    if label is None:
        return None
    name = SAMPLER_NAMES.get(label.strip().lower())
    if name is None:
        raise InputFileError(
            f"{where}: sampler {label!r} is not one edgegen has; it reads {', '.join(LABELS)}",
            option="scheduler",
            advice="pass {} to choose one",
        )
    return name


def _number(fields: dict[str, str], key: str, kind: type[int] | type[float], where: str):
    value = fields.get(key, "")
    if value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise InputFileError(f"{where}: {key} {value!r} is not a number") from None


def _size(value: str | None, where: str) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
    if not m:
        raise InputFileError(f"{where}: size {value!r} is not WIDTHxHEIGHT")
    return int(m[1]), int(m[2])
