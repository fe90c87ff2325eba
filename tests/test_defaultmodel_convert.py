"""The shipped default model converts to MLX like any SD model, and the artifacts match it.

Thresholds are the converter's own (``THRESHOLDS`` in edgegen/convert.py, as in test_convert.py):
an fp16 artifact ≥ 40 dB PSNR against the unconverted model rendered in float32, an 8-bit one
≥ 30 dB. Nothing here names the model's sizes or hashes: the weights may be retrained.
The store is the per-test temporary ``EDGEGEN_HOME`` that conftest.py sets.
"""

import mlx.core as mx
import numpy as np
import pytest
from click.testing import CliRunner

from edgegen import defaultmodel, store
from edgegen.cli import cli
from edgegen.convert import THRESHOLDS, ConvertOptions, convert, psnr
from edgegen.converters.manifest import Manifest
from edgegen.params import GenerationParams
from edgegen.pipeline import StableDiffusion
from edgegen.sources import open_model

PARAMS = GenerationParams("a red sun in the top left over a calm sea at night", steps=3, seed=1)
CHECK_STEPS = 2  # the converter's own quality render; kept short, it runs twice per conversion


def _render(source, dtype=mx.float32) -> np.ndarray:
    """Float image in [0, 1] at the model's native size (no uint8 rounding)."""
    sd = StableDiffusion(source, dtype)
    width, height = sd.default_size
    p = GenerationParams(**{**PARAMS.__dict__, "width": width, "height": height})
    x = None
    for step in sd.denoise(p, sd.initial_noise(p.seed, width, height)):
        x = step.latents
        mx.eval(x)
    img = sd.vae.decode((x / sd.vae.config.scaling_factor).astype(sd.dtype))
    return np.array(mx.clip(img.astype(mx.float32) / 2 + 0.5, 0, 1))


def _at_least(reference: np.ndarray, image: np.ndarray, threshold: float) -> None:
    value = psnr(reference, image)  # None: identical
    assert value is None or value >= threshold, f"{value:.2f} dB < {threshold} dB"


@pytest.fixture(scope="module")
def folder():
    try:
        return defaultmodel.path()
    except FileNotFoundError:
        pytest.skip("the default model's weights are not in this checkout")


@pytest.fixture(scope="module")
def reference(folder) -> np.ndarray:
    """The unconverted default model (its diffusers folder) rendered in float32."""
    image = _render(open_model(folder))
    assert np.isfinite(image).all() and image.std() > 0.01  # a picture, not a flat field
    return image


def _quality_passed(manifest: Manifest, key: str | int) -> None:
    quality = manifest.quality
    assert quality["passed"] and quality["threshold_db"] == THRESHOLDS[key]
    assert quality["psnr_db"] is None or quality["psnr_db"] >= THRESHOLDS[key]


def test_float16_artifact_matches_the_unconverted_model(folder, reference):
    result = convert(folder, ConvertOptions(dtype="float16", check_steps=CHECK_STEPS))
    components = result.manifest.mlx.components
    assert set(components) >= {"unet", "vae", "text_encoder"}
    assert {e.dtype for e in components.values()} == {"float16"}
    _quality_passed(result.manifest, "float16")
    # Stored in fp16, computed in float32 (what the CPU runtime does) and in float16 (a GPU).
    artifact = open_model(result.path)
    _at_least(reference, _render(artifact), THRESHOLDS["float16"])
    _at_least(reference, _render(artifact, mx.float16), THRESHOLDS["float16"])


def test_8bit_artifact_matches_the_unconverted_model(folder, reference):
    result = convert(folder, ConvertOptions(quantize=8, check_steps=CHECK_STEPS))
    unet = result.manifest.mlx.components["unet"]
    assert unet.quantization.bits == 8 and unet.quantization.layers
    _quality_passed(result.manifest, 8)
    _at_least(reference, _render(open_model(result.path)), THRESHOLDS[8])


def test_edgegen_convert_accepts_the_default_model(folder):
    # By its alias, as a user would type it; it gets the name the default model has everywhere.
    args = ["convert", "default", "--to", "mlx", "-q", "8"]
    args += ["--check-steps", "1", "--min-psnr", str(THRESHOLDS[8])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    name = f"{defaultmodel.DEFAULT_MODEL_NAME}-q8"
    assert name in result.output and "quality: PSNR" in result.output
    path = store.models_dir() / name
    manifest = Manifest.read(path)
    assert manifest.conversion["quantize"] == 8 and manifest.quality["passed"]
    # The artifact is usable by name, like any converted model.
    assert open_model(name).family == manifest.family
    # By its folder, it is the same model under the same name (already converted: up to date).
    again = CliRunner().invoke(cli, ["convert", str(folder), "--to", "mlx", "-q", "8"])
    assert again.exit_code == 0 and name in again.output, again.output
