"""SDXL and SDXL-Turbo: parity with diffusers' StableDiffusionXLPipeline, and conversion."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from edgegen.convert import ConvertOptions, convert, psnr
from edgegen.params import GenerationParams, portrait_size
from edgegen.pipelines import load_pipeline
from edgegen.sdxl import StableDiffusionXL

WIDTH, HEIGHT = 64, 128


@pytest.fixture(scope="module")
def tiny_sdxl_turbo(tmp_path_factory):
    from tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl-turbo"), turbo=True)


def _latents(seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, HEIGHT // 2, WIDTH // 2, 4)).astype(np.float32)


def _diffusers(path, latents, prompt, negative, steps, guidance):
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt,
        negative_prompt=negative or None,
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=HEIGHT,
        width=WIDTH,
        latents=torch.from_numpy(latents.transpose(0, 3, 1, 2).copy()),
        output_type="np",
    )
    return (out.images * 255).round().astype(np.uint8)


def _ours(model, latents, prompt, negative, steps, guidance, dtype=mx.float32):
    sd = load_pipeline(model, dtype)
    assert isinstance(sd, StableDiffusionXL)
    p = GenerationParams(
        prompt, negative, steps=steps, guidance=guidance, width=WIDTH, height=HEIGHT
    )
    return sd.generate(p, latents=mx.array(latents))


def _mae(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()


@pytest.mark.parametrize(
    "negative",
    [pytest.param("", marks=pytest.mark.slow), "blurry, dark"],
    ids=["zero-negative", "negative"],
)
def test_sdxl_matches_diffusers(tiny_sdxl, negative):
    latents = _latents()
    ref = _diffusers(tiny_sdxl, latents, "a lighthouse at dusk", negative, 2, 5.0)
    ours = _ours(tiny_sdxl, latents, "a lighthouse at dusk", negative, 2, 5.0)
    assert ours.shape == ref.shape == (1, HEIGHT, WIDTH, 3)
    assert _mae(ours, ref) <= 1.0, _mae(ours, ref)


def test_sdxl_turbo_one_step_without_guidance_matches_diffusers(tiny_sdxl_turbo):
    latents = _latents(5)
    ref = _diffusers(tiny_sdxl_turbo, latents, "a red fox", "", 1, 0.0)
    ours = _ours(tiny_sdxl_turbo, latents, "a red fox", "", 1, 0.0)
    assert _mae(ours, ref) <= 1.0, _mae(ours, ref)


def test_sdxl_conversion_parity_and_precision_traps(tiny_sdxl):
    latents = _latents()
    folder = _ours(tiny_sdxl, latents, "a cat", "dull", 2, 4.0)
    fp32 = convert(tiny_sdxl, ConvertOptions(dtype="float32", check=False))
    assert fp32.manifest.family == "sdxl"
    assert set(fp32.manifest.mlx.components) == {
        "text_encoder", "text_encoder_2", "unet", "vae",
    }  # fmt: skip
    assert any((fp32.path / "tokenizer_2").iterdir())
    assert np.array_equal(_ours(fp32.name, latents, "a cat", "dull", 2, 4.0), folder)

    q8 = convert(tiny_sdxl, ConvertOptions(quantize=8, group_size=32, check_steps=2))
    comps = q8.manifest.mlx.components
    # SDXL's VAE overflows in half precision: it stays float32 in a float16 artifact.
    assert comps["vae"].dtype == "float32" and comps["unet"].dtype == "float16"
    assert "add_embedding.linear_1" in comps["unet"].quantization.kept
    assert comps["text_encoder_2"].quantization.bits == 8
    assert q8.manifest.quality["psnr_db"] >= 30
    ref = _ours(tiny_sdxl, latents, "a cat", "dull", 2, 4.0).astype(np.float32) / 255
    got = _ours(q8.name, latents, "a cat", "dull", 2, 4.0, mx.float16).astype(np.float32) / 255
    assert psnr(ref, got) >= 30


def test_turbo_conversion_records_defaults_and_trailing_spacing(tiny_sdxl_turbo):
    result = convert(tiny_sdxl_turbo, ConvertOptions(check_steps=1))
    m = result.manifest
    assert m.extra["turbo"] is True
    assert m.defaults == {"steps": 1, "guidance": 0.0}
    assert m.config["scheduler"]["timestep_spacing"] == "trailing"
    assert m.quality["guidance"] == 0.0


def test_sdxl_size_conditioning_and_default_size():
    ids = StableDiffusionXL.time_ids(768, 1344, 2)
    assert ids.tolist() == [[1344, 768, 0, 0, 1344, 768]] * 2
    assert portrait_size(1024) == (768, 1344)


def test_sdxl_single_file_checkpoint_converts_to_the_folder_weights(tiny_sdxl, tmp_path):
    from tiny_sd import make_checkpoint

    ckpt = make_checkpoint(tiny_sdxl, "sdxl", tmp_path / "xl.safetensors")
    keys = mx.load(str(ckpt)).keys()
    assert any(k.startswith("conditioner.embedders.1.model.transformer.resblocks.") for k in keys)
    opts = dict(dtype="float32", check=False)
    a = convert(tiny_sdxl, ConvertOptions(**opts))
    b = convert(ckpt, ConvertOptions(**opts), checkpoint_options={"config_from": tiny_sdxl})
    assert b.manifest.family == "sdxl"
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        x = mx.load(str(a.path / f"{comp}.safetensors"))
        y = mx.load(str(b.path / f"{comp}.safetensors"))
        assert x.keys() == y.keys(), comp
        assert all(mx.array_equal(x[k], y[k]).item() for k in x), comp


def test_generate_uses_a_turbo_models_defaults_unless_told(tiny_sdxl_turbo, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from edgegen.cli import cli

    name = convert(tiny_sdxl_turbo, ConvertOptions(check_steps=1)).name

    def parameters(*extra):
        out = tmp_path / "t.png"
        args = ["generate", "a fox", "--model", name, "--size", "64x64", "-o", str(out), *extra]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return result.output, Image.open(out).text["parameters"]

    said, params = parameters()
    assert "Steps: 1," in params and "CFG scale: 0," in params
    assert "using the model's defaults: steps 1, guidance 0" in said
    said, params = parameters("--steps", "2", "--guidance", "1.5")
    assert "Steps: 2," in params and "CFG scale: 1.5," in params
    assert "model's defaults" not in said


def test_render_image_source_uses_a_turbo_models_defaults(tiny_sdxl_turbo):
    from edgegen.pipelines import StableDiffusionImageSource

    name = convert(tiny_sdxl_turbo, ConvertOptions(check_steps=1)).name
    source = StableDiffusionImageSource.load(name)
    assert (source.steps, source.guidance) == (1, 0.0)
    assert (StableDiffusionImageSource.load(name, steps=3).steps) == 3
