"""Single-file CompVis checkpoints convert to exactly what the diffusers folder converts to."""

import mlx.core as mx
import pytest
from click.testing import CliRunner
from tiny_sd import make_checkpoint

from edgegen.cli import cli
from edgegen.convert import ConvertOptions, convert
from edgegen.errors import ModelError, UnsupportedModelError, UsageError


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
    assert b.manifest.source["kind"] == "checkpoint"
    assert b.manifest.config == a.manifest.config
    for comp in ("unet", "vae", "text_encoder"):
        x, y = _tensors(a, comp), _tensors(b, comp)
        assert x.keys() == y.keys(), comp
        assert all(mx.array_equal(x[k], y[k]).item() for k in x), comp


# The key prefixes of the released files (SD 1.5, SD 2.1, SDXL 1.0 base), one tensor each.
RELEASE_KEYS = {
    "sd1": "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
    "sd2": "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
    "sdxl": "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
}
PIPELINES = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline"}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_diffusers_single_file_reader_loads_our_fixtures_to_the_folder_weights(
    family, request, tmp_path
):
    """An independent check of the fixtures' layout: diffusers' own from_single_file reads each
    file, EMA copies and training leftovers included, into exactly the folder's weights, every
    component. So the files are what real releases look like, not only what we read back."""
    import diffusers
    import torch

    src = request.getfixturevalue(f"tiny_{family}")
    ckpt = make_checkpoint(src, family, tmp_path / "x.safetensors", ema=True)
    keys = mx.load(str(ckpt)).keys()
    assert RELEASE_KEYS[family] in keys
    assert any(k.startswith("model_ema.diffusion_model") for k in keys)
    pipeline = getattr(diffusers, PIPELINES.get(family, "StableDiffusionXLPipeline"))
    ref = pipeline.from_pretrained(src)
    pipe = pipeline.from_single_file(str(ckpt), config=str(src), local_files_only=True)
    components = [
        c for c in ("unet", "vae", "text_encoder", "text_encoder_2") if c in ref.components
    ]
    for comp in components:
        got, want = getattr(pipe, comp).state_dict(), getattr(ref, comp).state_dict()
        assert got.keys() == want.keys(), comp
        assert all(torch.equal(got[k], want[k]) for k in want), comp


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_and_pruned_fp16_checkpoints_convert_to_the_folder_weights(family, request, tmp_path):
    # A full training checkpoint (EMA copies, schedule, counters) reads as its non-EMA weights,
    # as diffusers reads it; a pruned fp16 file is the folder's weights in fp16.
    src = request.getfixturevalue(f"tiny_{family}")
    full = make_checkpoint(src, family, tmp_path / "full.safetensors", ema=True)
    fp16 = make_checkpoint(src, family, tmp_path / "pruned-fp16.safetensors", dtype="float16")
    cfg = {"config_from": src}
    for ckpt, dtype in ((full, "float32"), (fp16, "float16")):
        opts = dict(dtype=dtype, check=False)
        a = convert(src, ConvertOptions(**opts, name=f"folder-{dtype}"))
        b = convert(ckpt, ConvertOptions(**opts, name=ckpt.stem), checkpoint_options=cfg)
        for comp in a.manifest.mlx.components:
            x, y = _tensors(a, comp), _tensors(b, comp)
            assert x.keys() == y.keys(), comp
            if dtype == "float16":  # what the pruned file holds: each weight rounded to fp16
                x = {k: v.astype(mx.float16).astype(v.dtype) for k, v in x.items()}  # (VAE fp32)
            assert all(mx.array_equal(x[k], y[k]).item() for k in x), (ckpt.name, comp)


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

    from edgegen.converters.checkpoint_presets import preset_configs
    from edgegen.converters.components import build_module
    from edgegen.converters.mapping import parameter_shapes

    config = preset_configs(family, None)[component]
    shapes = parameter_shapes(build_module(component, config))
    assert sum(math.prod(s) for s in shapes.values()) == RELEASE_PARAMETERS[family, component]


def test_preset_tokenizers_and_sd2_prediction_choice():
    from edgegen.converters.checkpoint_presets import preset_configs, preset_tokenizers
    from edgegen.converters.tokenizer import CLIPTokenizer

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


class _Trap:
    """Unpickling this creates a marker file: proof that a reader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "misnamed.safetensors", "zip.ckpt"])
def test_pickled_checkpoints_are_refused_unread(name, tmp_path):
    import pickle

    import torch

    marker = tmp_path / "unpickled"
    path = tmp_path / name
    payload = {"state_dict": {"model.diffusion_model.x": _Trap(marker)}}
    if name.startswith("zip"):
        torch.save(payload, path)  # torch's zip format, as most .ckpt files are
    else:
        path.write_bytes(pickle.dumps(payload))
    pickle.loads(pickle.dumps(_Trap(tmp_path / "probe")))  # the trap works ...
    assert (tmp_path / "probe").exists()
    result = CliRunner().invoke(cli, ["convert", str(path)])
    assert result.exit_code == 4, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "is a pickled checkpoint" in lines[0] and name in lines[0]
    assert not marker.exists()  # ... and edgegen never sprang it
    from edgegen import store

    assert not store.models_dir().exists() or not any(store.models_dir().iterdir())


# Python as a user with only the README set-up has it: none of the test-only packages import.
_BLOCK_TEST_PACKAGES = """
import sys
BLOCKED = {"torch", "diffusers", "transformers", "open_clip", "onnxruntime", "piper", "safetensors"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is a test-only package", name=name)
sys.meta_path.insert(0, Block())
"""


def _without_test_packages(tmp_path, code, *args):
    import os
    import subprocess
    import sys

    script = tmp_path / "alone.py"
    script.write_text(_BLOCK_TEST_PACKAGES + code)
    env = {**os.environ, "EDGEGEN_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, str(script), *map(str, args)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_single_file_converts_and_generates_with_the_default_install_alone(
    family, request, tmp_path
):
    src = request.getfixturevalue(f"tiny_{family}")
    ckpt = make_checkpoint(src, family, tmp_path / f"tiny-{family}.safetensors", ema=True)
    edgegen = "from edgegen.cli import main\nmain()\n"
    convert_args = ["convert", ckpt, "--config-from", src, "--name", "mine", "--check-steps", 1]
    _without_test_packages(tmp_path, edgegen, *convert_args)
    out = tmp_path / "image.png"
    args = ["generate", "a cat", "--model", "mine", "--size", "64x64", "--steps", 2, "-o", out]
    _without_test_packages(tmp_path, edgegen, *args)
    assert out.stat().st_size > 0
    # Without --config-from, the release's tokenizers come from the merge list edgegen ships.
    tokenize = (
        "from edgegen.converters.checkpoint_presets import preset_tokenizers\n"
        "from edgegen.converters.tokenizer import CLIPTokenizer\n"
        f"folders, keep = preset_tokenizers({family!r})\n"
        "for name, folder in sorted(folders.items()):\n"
        "    ids = CLIPTokenizer.from_dir(folder).encode(['a photo of a cat']).ids\n"
        "    print(name, ids[0, :7].tolist())\n"
    )
    said = _without_test_packages(tmp_path, tokenize).splitlines()
    names = ["tokenizer", "tokenizer_2"] if family == "sdxl" else ["tokenizer"]
    assert said == [f"{n} [49406, 320, 1125, 539, 320, 2368, 49407]" for n in names]
