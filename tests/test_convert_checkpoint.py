"""Single-file CompVis checkpoints convert to exactly what the diffusers folder converts to."""

import mlx.core as mx
import pytest
from click.testing import CliRunner

from edgegen.cli import cli
from edgegen.converters.checkpoint import PREFIXES, from_diffusers
from edgegen.converters.convert_sd import ConvertOptions, convert
from edgegen.converters.diffusers import read_json
from edgegen.converters.safetensors_io import read_component
from edgegen.errors import ModelError, UnsupportedModelError, UsageError


def make_checkpoint(src, family, path, extra=None):
    """The tiny diffusers model as a single CompVis-layout file (by the inverse mapping).

    For SD 2.x the text encoder is written in OpenCLIP's layout, with one more transformer
    layer than diffusers keeps and the unused projection, as real SD 2 checkpoints have them.
    """
    out = {}
    for comp, prefix in PREFIXES[family].items():
        cfg = read_json(src / comp / "config.json")
        for key, value in from_diffusers(read_component(src / comp), family, comp, cfg).items():
            out[prefix + key] = value
    if family == "sd2":
        p = PREFIXES["sd2"]["text_encoder"]
        n = read_json(src / "text_encoder" / "config.json")["num_hidden_layers"]
        last = f"{p}transformer.resblocks.{n - 1}."
        for key in [k for k in out if k.startswith(last)]:
            out[key.replace(f".{n - 1}.", f".{n}.", 1)] = out[key] + 1
        out[p + "text_projection"] = mx.zeros((32, 32))
        out[p + "logit_scale"] = mx.array(4.6)
    out["model_ema.decay"] = mx.array(0.999)  # training leftovers are ignored
    out.update(extra or {})
    mx.save_safetensors(str(path), out)
    return path


def _tensors(result, component):
    return mx.load(str(result.path / f"{component}.safetensors"))


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_checkpoint_converts_to_the_same_weights_as_the_folder(family, request, tmp_path):
    src = request.getfixturevalue(f"tiny_{family}")
    ckpt = make_checkpoint(src, family, tmp_path / f"tiny-{family}.safetensors")
    opts = dict(dtype="float32", check=False)
    a = convert(src, ConvertOptions(**opts))
    b = convert(
        ckpt, ConvertOptions(**opts, name="from-ckpt"), checkpoint_options={"config_from": src}
    )
    assert b.manifest["source"]["kind"] == "checkpoint"
    assert b.manifest["config"] == a.manifest["config"]
    for comp in ("unet", "vae", "text_encoder"):
        x, y = _tensors(a, comp), _tensors(b, comp)
        assert x.keys() == y.keys(), comp
        assert all(mx.array_equal(x[k], y[k]).item() for k in x), comp


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_inverse_mapping_agrees_with_diffusers_single_file_loader(family, request, tmp_path):
    """An independent check of the key tables: diffusers' own from_single_file reads our
    checkpoint back into exactly the original UNet and VAE."""
    import diffusers
    import torch

    src = request.getfixturevalue(f"tiny_{family}")
    ckpt = make_checkpoint(src, family, tmp_path / "x.safetensors")
    ref = diffusers.StableDiffusionPipeline.from_pretrained(src)
    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        str(ckpt), config=str(src), local_files_only=True, text_encoder=ref.text_encoder
    )
    for comp in ("unet", "vae"):
        got, want = getattr(pipe, comp).state_dict(), getattr(ref, comp).state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), comp


def test_checkpoint_through_the_cli(tiny_sd1, tmp_path):
    ckpt = make_checkpoint(tiny_sd1, "sd1", tmp_path / "My-Model.safetensors")
    args = ["convert", str(ckpt), "--config-from", str(tiny_sd1), "--check-steps", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "my-model-fp16" in result.output and "PSNR" in result.output
    # Without --config-from the standard SD 1.5 configuration is tried, which a tiny model
    # does not fit: the error says so and what to do.
    result = CliRunner().invoke(cli, ["convert", str(ckpt), "--no-check", "--name", "other"])
    assert result.exit_code == 4 and "standard sd1 configuration" in result.output
    assert "--config-from" in result.output


def test_bad_checkpoints_are_refused(tiny_sd1, tmp_path):
    opts = ConvertOptions(check=False)
    cfg = {"config_from": tiny_sd1}
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"PK\x03\x04")
    with pytest.raises(ModelError, match="only as .safetensors"):
        convert(pickle, opts, checkpoint_options=cfg)
    other = tmp_path / "other.safetensors"
    mx.save_safetensors(str(other), {"transformer.blocks.0.weight": mx.zeros((2,))})
    with pytest.raises(UnsupportedModelError, match="not a Stable Diffusion"):
        convert(other, opts, checkpoint_options=cfg)
    odd = make_checkpoint(tiny_sd1, "sd1", tmp_path / "odd.safetensors", {"lora.up": mx.zeros(2)})
    with pytest.raises(ModelError, match="unexpected tensor 'lora.up'"):
        convert(odd, opts, checkpoint_options=cfg)
    good = make_checkpoint(tiny_sd1, "sd1", tmp_path / "good.safetensors")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelError, match="truncated"):
        convert(good, opts, checkpoint_options=cfg)
    with pytest.raises(UsageError, match="single-file checkpoints only"):
        convert(tiny_sd1, opts, checkpoint_options=cfg)


# Parameter counts of the public releases (diffusers' UNet2DConditionModel, AutoencoderKL and
# transformers' CLIP text models on their published configs).
RELEASE_PARAMETERS = {
    ("sd1", "unet"): 859_520_964,
    ("sd1", "text_encoder"): 123_060_480,
    ("sd2", "unet"): 865_910_724,
    ("sd2", "text_encoder"): 340_387_840,
    ("sdxl", "unet"): 2_567_463_684,
    ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840,
    ("sdxl", "vae"): 83_653_863,
}


@pytest.mark.parametrize(("family", "component"), list(RELEASE_PARAMETERS))
def test_preset_configs_build_the_release_architectures(family, component):
    """Built lazily by MLX: nothing is allocated, only shapes are counted."""
    import math

    from edgegen.artifact import build_module
    from edgegen.converters.checkpoint_presets import preset_configs
    from edgegen.converters.mapping import parameter_shapes

    config = preset_configs(family, None)[component]
    shapes = parameter_shapes(build_module(component, config))
    assert sum(math.prod(s) for s in shapes.values()) == RELEASE_PARAMETERS[family, component]


def test_preset_tokenizers_and_sd2_prediction_choice():
    from edgegen.converters.checkpoint_presets import preset_configs, preset_tokenizers
    from edgegen.tokenizer import CLIPTokenizer

    v = preset_configs("sd2", None)
    base = preset_configs("sd2", "epsilon")
    assert (v["scheduler"]["prediction_type"], v["unet"]["sample_size"]) == ("v_prediction", 96)
    assert (base["scheduler"]["prediction_type"], base["unet"]["sample_size"]) == ("epsilon", 64)
    folders, keep = preset_tokenizers("sdxl")
    ids = (
        CLIPTokenizer.from_dir(folders["tokenizer_2"]).encode(["a photo of a cat"]).ids[0].tolist()
    )
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]  # SD's ids for this prompt
    assert ids[7] == 0  # "!" pads SDXL's second tokenizer
    keep.cleanup()


def test_renamed_keys_that_do_not_fit_are_named(tiny_sd1, tmp_path):
    unknown = "model.diffusion_model.input_blocks.1.0.in_layers.9.weight"
    bad = make_checkpoint(tiny_sd1, "sd1", tmp_path / "b.safetensors", {unknown: mx.zeros((4,))})
    with pytest.raises(ModelError, match=r"in_layers\.9"):
        convert(bad, ConvertOptions(check=False), checkpoint_options={"config_from": tiny_sd1})
