"""Convert a Stable Diffusion model (SD 1.x, 2.x, XL, Turbo) into an MLX store artifact.

The artifact layout is described in ``converters/source.py`` (:func:`open_artifact`), its
manifest in ``converters/manifest.py``. Conversion:

1. Open the source: a diffusers folder, a cached Hugging Face repo id, or a single-file
   CompVis/SGM checkpoint (``converters/checkpoint.py`` renames its keys to diffusers names).
2. Hash the source files. If the store already holds this name, converted from the same
   files with the same options by this format version, stop: it is up to date.
3. Inside ``store.new_artifact`` (a hidden temporary directory, renamed into place only at the
   end, so Ctrl-C or a crash leaves nothing half-written), per component: build the MLX module
   from its config, map the source weights onto it with the loaders' own strict rules, cast,
   quantize (``converters/quantize.py``) and write ``<component>.safetensors``. ``mx.load`` is
   lazy, so only one component is in memory at a time.
4. Copy the tokenizer files; write the manifest.
5. Quality report: render a fixed prompt and seed with the float32 source and with the
   artifact; record the PSNR (and warn below the threshold for the precision).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from edgegen import __version__, store
from edgegen.converters.components import MODEL_COMPONENTS, build_module
from edgegen.converters.diffusers import open_diffusers, resolve
from edgegen.converters.manifest import FORMAT_VERSION, MANIFEST, Component, Manifest, Target
from edgegen.converters.quantize import QuantPlan, check_options, plan, quantize_weights
from edgegen.converters.safetensors_io import read_header, write_file
from edgegen.converters.source import DTYPES, ModelSource, open_artifact
from edgegen.device import compute_dtype, vae_needs_float32
from edgegen.errors import (
    ModelError,
    ModelNotFoundError,
    OutputError,
    QualityError,
    UsageError,
)
from edgegen.fileio import sha256_file

# Minimum PSNR (dB) of the converted model's check image against the float32 source: below it
# the converter warns (or fails with --min-psnr). fp16 rounding alone stays far above 40 dB;
# 8-bit weights typically give 30-40 dB; 4-bit is reported, with a low bar that catches breakage.
THRESHOLDS = {"float32": 60.0, "float16": 40.0, "bfloat16": 30.0, 8: 30.0, 4: 15.0}
CHECK_PROMPT = "a lighthouse on a rocky coast at sunset, detailed photograph"
CHECK_NEGATIVE = "blurry, low quality"
CHECK_SEED = 0


class QualityWarning(UserWarning):
    """The converted model's check image is further from the source than its threshold."""


@dataclass(frozen=True)
class ConvertOptions:
    dtype: str = "float16"  # weights not quantized (and quantization scales) are stored in this
    quantize: int | None = None  # 8 or 4 bits, None for no quantization
    group_size: int = 64  # weights sharing one scale and bias
    name: str | None = None  # store name; default: source name + precision suffix
    force: bool = False  # replace an existing model of that name
    check: bool = True  # render the quality check (fixed prompt and seed)
    check_steps: int = 4
    min_psnr: float | None = None  # fail (QualityError) below this instead of warning

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype {self.dtype!r} is not supported; choose one of {list(DTYPES)}")
        check_options(self.quantize, self.group_size)
        if self.check_steps < 1:
            raise UsageError(f"check steps must be ≥ 1, got {self.check_steps}")
        if self.name is not None:
            store.check_name(self.name)

    def record(self) -> dict[str, Any]:
        """What decides the artifact's bytes: equal records mean an up-to-date conversion."""
        return {
            "to": "mlx",
            "dtype": self.dtype,
            "quantize": self.quantize,
            "group_size": self.group_size if self.quantize else None,
        }


@dataclass
class ConvertResult:
    name: str
    path: Path
    manifest: Manifest
    seconds: float
    up_to_date: bool = False


# (event, component, details) → None; events: "hash", "component", "component-done",
# "quality", "quality-done".
Progress = Callable[[str, str, dict[str, Any]], None]


def open_source(src: str | Path, **checkpoint_options: Any) -> ModelSource:
    """A diffusers folder, a cached repo id, or a single-file ``.safetensors`` checkpoint."""
    path = Path(src).expanduser()
    if path.is_file() or path.suffix in (".safetensors", ".ckpt", ".pt", ".bin"):
        if not path.exists():
            raise ModelNotFoundError(f"checkpoint {str(path)!r} does not exist")
        from edgegen.converters.checkpoint import open_checkpoint

        return open_checkpoint(path, **checkpoint_options)
    if checkpoint_options.get("config_from") is not None:
        raise UsageError(
            f"{str(src)!r} is not a single-file checkpoint",
            option="config_from",
            advice="{} applies to single-file checkpoints only",
        )
    from edgegen import defaultmodel

    if str(src) in defaultmodel.ALIASES or path.resolve() == defaultmodel.FOLDER:
        # The built-in model, by its alias or its folder: named as everywhere else.
        source = open_diffusers(defaultmodel.path())
        return replace(source, name=defaultmodel.DEFAULT_MODEL_NAME)
    return open_diffusers(resolve(src))


def default_name(source: ModelSource, options: ConvertOptions) -> str:
    base = source.name.split("/")[-1].lower()
    base = re.sub(r"[^a-z0-9._-]+", "-", base).strip("-._") or "model"
    if options.quantize:
        suffix = f"q{options.quantize}"
    else:
        suffix = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[options.dtype]
    return f"{base}-{suffix}"


def component_dtype(component: str, source: ModelSource, options: ConvertOptions) -> str:
    """The stored float dtype of a component: the requested one, except SDXL's VAE, which
    overflows in half precision (black/NaN images) unless its config says it was fixed."""
    half = options.dtype != "float32"
    if component == "vae" and half and vae_needs_float32(source.family, source.config("vae")):
        return "float32"
    return options.dtype


def convert_component(
    source: ModelSource, component: str, options: ConvertOptions, out_dir: Path
) -> Component:
    """Map, cast, quantize and write one component; return its manifest entry."""
    from edgegen.converters.mapping import parameter_shapes

    model = build_module(component, source.config(component))
    mapped = source.mapped_weights(component, model)
    dtype_name = component_dtype(component, source, options)
    dtype = DTYPES[dtype_name]
    qplan: QuantPlan | None = None
    if options.quantize:
        qplan = plan(component, model, options.quantize, options.group_size)
    # Quantized layers are quantized from the source precision, not from the rounded dtype.
    qkeys = {f"{p}.weight" for p in qplan.layers} if qplan is not None else set()
    out = {k: v if k in qkeys else v.astype(dtype) for k, v in mapped.items()}
    if qkeys:
        out = quantize_weights(out, qplan, dtype)
    path = out_dir / f"{component}.safetensors"
    size = write_file(path, out, {"format": "mlx", "component": component})
    del out, mapped
    return Component(
        file=path.name,
        dtype=dtype_name,
        quantization=qplan,
        parameters=sum(math.prod(s) for s in parameter_shapes(model).values()),
        bytes=size,
    )


def _copy_tree(src: Path, dst: Path) -> None:
    try:
        shutil.copytree(src, dst)
    except OSError as e:
        raise OutputError(f"cannot copy {str(src)!r} into the store: {e}") from e


def _artifact_files(root: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(root).as_posix()
        files[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def _is_up_to_date(
    name: str, record: dict[str, Any], source_files: dict[str, str], source: ModelSource
) -> bool:
    try:
        old = Manifest.read(store.models_dir() / name)
    except ModelError:
        return False
    configs = json.loads(json.dumps({c: source.config(c) for c in source.configs}))
    return (
        old.format_version == FORMAT_VERSION
        and old.conversion == record
        and old.source.get("files") == source_files
        and old.config == configs
    )


def convert(
    src: str | Path,
    options: ConvertOptions,
    progress: Progress | None = None,
    checkpoint_options: dict[str, Any] | None = None,
) -> ConvertResult:
    """Convert ``src`` into the store; see the module docstring for the steps.

    ``checkpoint_options`` go to :func:`edgegen.converters.checkpoint.open_checkpoint` for a
    single-file source (``config_from``, ``prediction_type``)."""
    report = progress or (lambda event, component, details: None)
    options.validate()
    t0 = time.perf_counter()

    # 1-2. Source, name, and the up-to-date check.
    source = open_source(src, **(checkpoint_options or {}))
    for path in source.files.values():  # a truncated or corrupt file stops us before any work
        if str(path).endswith(".safetensors"):
            read_header(path)
    name = options.name or default_name(source, options)
    store.check_name(name)
    report("hash", "", {"files": len(source.files)})
    source_files = source.hashes()
    record = options.record()
    if store.exists(name):
        if not options.force and _is_up_to_date(name, record, source_files, source):
            path = store.models_dir() / name
            return ConvertResult(name, path, Manifest.read(path), 0.0, up_to_date=True)
        if not options.force:
            raise UsageError(
                f"model {name!r} already exists in the store (converted differently or from "
                "other files)",
                option="force",
                advice="pass {} to replace it, or choose another name",
            )

    # 3. Components, each written into the hidden temporary artifact directory.
    with store.new_artifact(name, force=options.force) as tmp:
        components: dict[str, Component] = {}
        for component in [c for c in MODEL_COMPONENTS if c in source.components]:
            report("component", component, {})
            t = time.perf_counter()
            components[component] = convert_component(source, component, options, tmp)
            report(
                "component-done",
                component,
                {"entry": components[component], "seconds": time.perf_counter() - t},
            )

        # 4. Tokenizers and manifest.
        for which in ("tokenizer", "tokenizer_2"):
            if which in source.tokenizers:
                _copy_tree(source.tokenizers[which], tmp / which)
        files = _artifact_files(tmp)
        components = {c: replace(e, sha256=files[e.file]["sha256"]) for c, e in components.items()}
        manifest = Manifest(
            name=name,
            kind="diffusion",
            family=source.family,
            edgegen_version=__version__,
            created=store.now_iso(),
            source={
                "path": str(source.root),
                "kind": source.kind,
                "name": source.name,
                "files": source_files,
            },
            conversion=record,
            targets={"mlx": Target(components, files, layout="NHWC")},
            config={c: source.config(c) for c in source.configs},
            defaults=source.defaults,
            bytes=sum(f["bytes"] for f in files.values()),
            extra={"turbo": source.turbo},
        )
        _write(tmp, manifest)

        # 5. Quality report against the float32 source.
        if options.check:
            report("quality", "", {"steps": options.check_steps})
            quality = quality_report(source, open_artifact(tmp), options.check_steps)
            key = options.quantize or options.dtype
            quality["threshold_db"] = THRESHOLDS[key]
            quality["passed"] = quality["psnr_db"] is None or quality["psnr_db"] >= THRESHOLDS[key]
            manifest = replace(manifest, quality=quality)
            _write(tmp, manifest)
            report("quality-done", "", quality)
            psnr = quality["psnr_db"]
            if options.min_psnr is not None and psnr is not None and psnr < options.min_psnr:
                raise QualityError(
                    f"converted model {name!r} scores {psnr:.1f} dB PSNR against the source, "
                    f"below the minimum of {options.min_psnr:g} dB asked for; nothing was written",
                    option="min_psnr",
                    advice="lower {} or convert at a higher precision",
                )
            if not quality["passed"]:
                warnings.warn(
                    f"converted model {name!r} scores {psnr:.1f} dB PSNR against the source, "
                    f"below the {THRESHOLDS[key]:g} dB expected for {key}"
                    + (" bits" if options.quantize else ""),
                    QualityWarning,
                    stacklevel=2,
                )
    path = store.models_dir() / name
    return ConvertResult(name, path, manifest, time.perf_counter() - t0)


def psnr(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB of images in [0, 1]; None when they are identical."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return None if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def check_size(native: int) -> int:
    """The quality check renders a square at half the native side (≥ 64): the comparison is of
    two models on one input, so a small render measures the same drift, four times faster."""
    return max(64, round(native / 2 / 64) * 64)


def render_check(source: ModelSource, steps: int, guidance: float, dtype: mx.Dtype) -> np.ndarray:
    """The check image (float, [0, 1], NHWC) of ``source`` for the fixed prompt and seed."""
    from edgegen.params import GenerationParams
    from edgegen.pipelines import pipeline_for

    sd = pipeline_for(source, dtype)
    size = check_size(sd.native)
    p = GenerationParams(
        CHECK_PROMPT, CHECK_NEGATIVE, steps=steps, guidance=guidance, seed=CHECK_SEED,
        width=size, height=size,
    )  # fmt: skip
    latents = None
    for step in sd.denoise(p, sd.initial_noise(CHECK_SEED, size, size)):
        mx.eval(step.latents)
        latents = step.latents
    return np.array(sd.decode_float(latents))


def quality_report(reference: ModelSource, converted: ModelSource, steps: int) -> dict[str, Any]:
    """Render the check image with the float32 ``reference`` and with ``converted`` (in its
    stored precision on a GPU; in float32 on a CPU, where half-precision matmuls have no fast
    kernel, so only the stored weights' rounding is measured) and compare them."""
    compute = compute_dtype(converted.dtype)
    from edgegen.params import GenerationParams

    guidance = 0.0 if reference.turbo else GenerationParams.guidance
    ref = render_check(reference, steps, guidance, mx.float32)
    out = render_check(converted, steps, guidance, compute)
    value = psnr(ref, out)
    return {
        "prompt": CHECK_PROMPT,
        "negative": CHECK_NEGATIVE,
        "seed": CHECK_SEED,
        "steps": steps,
        "guidance": guidance,
        "size": list(ref.shape[1:3]),
        "reference": "source weights, float32",
        "compute_dtype": {mx.float32: "float32", mx.float16: "float16"}.get(compute, "bfloat16"),
        "psnr_db": None if value is None else round(value, 2),
        "max_abs_error": round(float(np.abs(ref - out).max()), 6),
    }


def _write(directory: Path, manifest: Manifest) -> None:
    try:
        manifest.write(directory)
    except OSError as e:
        raise OutputError(f"cannot write the manifest in {str(directory)!r}: {e.strerror}") from e
