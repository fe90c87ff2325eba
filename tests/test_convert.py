"""edgegen convert → store artifact → pipeline: parity, quantization, manifest, safety."""

import json
import os
import shutil

import mlx.core as mx
import numpy as np
import pytest

from edgegen import convert as convert_module
from edgegen import store
from edgegen.cli import flag
from edgegen.convert import ConvertOptions, convert, psnr
from edgegen.converters.manifest import Manifest
from edgegen.converters.quantize import dequantize
from edgegen.converters.source import open_artifact
from edgegen.errors import (
    ModelError,
    OutputError,
    QualityError,
    UnsupportedModelError,
    UsageError,
    WeightMappingError,
)
from edgegen.params import GenerationParams
from edgegen.pipeline import StableDiffusion
from edgegen.sources import open_model

SIZE = 64
PARAMS = GenerationParams("a red sun over the sea", "blurry", steps=3, guidance=5.0, seed=1)


def _render(source, dtype=mx.float32) -> np.ndarray:
    """Float image in [0, 1] (no uint8 rounding, so small differences stay visible)."""
    sd = StableDiffusion(source, dtype)
    p = GenerationParams(**{**PARAMS.__dict__, "width": SIZE, "height": SIZE})
    latents = sd.initial_noise(p.seed, SIZE, SIZE)
    x = None
    for step in sd.denoise(p, latents):
        x = step.latents
        mx.eval(x)
    img = sd.vae.decode((x / sd.vae.config.scaling_factor).astype(sd.dtype))
    return np.array(mx.clip(img.astype(mx.float32) / 2 + 0.5, 0, 1))


def _store_entries() -> list[str]:
    root = store.models_dir()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_float32_artifact_equals_unconverted_run(family, request):
    src = request.getfixturevalue(f"tiny_{family}")
    result = convert(src, ConvertOptions(dtype="float32", check=False))
    assert result.name == f"tiny-{family}-fp32"
    ours = _render(open_model(result.name))
    ref = _render(open_model(src))
    assert np.abs(ours - ref).max() <= 1e-5
    # The stored weights are the mapped source weights, bit for bit.
    artifact, source = open_artifact(result.path), open_model(src)
    from mlx.utils import tree_flatten

    for load in ("load_unet", "load_vae", "load_text_encoder"):
        a = dict(tree_flatten(getattr(artifact, load)(mx.float32).parameters()))
        b = dict(tree_flatten(getattr(source, load)(mx.float32).parameters()))
        assert a.keys() == b.keys()
        assert all(mx.array_equal(a[k], b[k]).item() for k in a), load


def test_float16_artifact_psnr_at_least_40db(tiny_sd2):
    result = convert(tiny_sd2, ConvertOptions(dtype="float16", check_steps=2))
    m = result.manifest
    assert {e.dtype for e in m.mlx.components.values()} == {"float16"}
    assert m.quality["psnr_db"] >= 40 and m.quality["passed"]
    # Computing in float16 too (what a GPU does), not only storing in it.
    ref = _render(open_model(tiny_sd2))
    assert psnr(ref, _render(open_model(result.name), mx.float16)) >= 40


def test_quantized_artifacts_psnr_and_layer_record(tiny_sd1):
    ref = _render(open_model(tiny_sd1))
    q8 = convert(tiny_sd1, ConvertOptions(quantize=8, group_size=32, check_steps=2))
    q4 = convert(tiny_sd1, ConvertOptions(quantize=4, group_size=32, check_steps=2))
    assert psnr(ref, _render(open_model(q8.name))) >= 30
    assert q8.manifest.quality["psnr_db"] >= 30
    assert q4.manifest.quality["psnr_db"] is not None  # reported
    unet = q4.manifest.mlx.components["unet"]
    quant = unet.quantization
    assert quant.bits == 4 and quant.group_size == 32 and quant.mode == "affine"
    assert "down_blocks.1.resnets.0.conv1" in quant.layers
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" in quant.layers
    assert "conv_in" in quant.kept and "conv_out" in quant.kept
    assert not any(p.startswith("time_embedding") for p in quant.layers)
    assert q8.manifest.mlx.components["vae"].quantization is None
    fp16 = convert(tiny_sd1, ConvertOptions(dtype="float16", check=False))
    sizes = [r.manifest.mlx.components["unet"].bytes for r in (fp16, q8, q4)]
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.parametrize("runtime", ["fused", "on-the-fly"])
def test_quantized_runtimes_agree_with_dequantize_at_load(tiny_sd1, runtime, monkeypatch):
    result = convert(tiny_sd1, ConvertOptions(quantize=8, group_size=32, check=False))
    monkeypatch.setenv("EDGEGEN_QUANT_RUNTIME", "at-load")
    at_load = _render(open_model(result.name))
    monkeypatch.setenv("EDGEGEN_QUANT_RUNTIME", runtime)
    assert np.abs(_render(open_model(result.name)) - at_load).max() < 1e-3


@pytest.mark.parametrize("bits", [4, 8])
def test_fast_dequantize_matches_mlx(bits):
    w = mx.random.normal((48, 256), key=mx.random.key(0))
    packed = mx.quantize(w, 64, bits)
    assert mx.array_equal(dequantize(*packed, 64, bits), mx.dequantize(*packed, 64, bits))


def test_manifest_schema(tiny_sd1):
    m = convert(tiny_sd1, ConvertOptions(quantize=8, group_size=32, check_steps=1)).manifest
    on_disk = json.loads((store.models_dir() / m.name / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m.to_dict()))
    assert Manifest.read(store.models_dir() / m.name) == m
    assert on_disk["format_version"] == store.FORMAT_VERSION
    for key, kind in {
        "name": str, "kind": str, "family": str, "edgegen_version": str, "created": str,
        "source": dict, "conversion": dict, "targets": dict, "config": dict, "quality": dict,
        "bytes": int, "defaults": dict,
    }.items():  # fmt: skip
        assert isinstance(on_disk[key], kind), key
    assert on_disk["kind"] == "diffusion" and on_disk["family"] == "sd1"
    assert on_disk["conversion"] == {
        "to": "mlx",
        "dtype": "float16",
        "quantize": 8,
        "group_size": 32,
    }
    files = on_disk["targets"]["mlx"]["files"]
    for comp, entry in on_disk["targets"]["mlx"]["components"].items():
        assert files[entry["file"]]["sha256"] == entry["sha256"], comp
        assert entry["bytes"] == files[entry["file"]]["bytes"] and entry["parameters"] > 0
    assert "tokenizer/vocab.json" in files
    src_files = on_disk["source"]["files"]
    assert "unet/diffusion_pytorch_model.safetensors" in src_files
    assert all(len(h) == 64 for h in src_files.values())
    assert set(on_disk["config"]) >= {"unet", "vae", "text_encoder", "scheduler", "model_index"}
    assert on_disk["quality"]["psnr_db"] > 0 and on_disk["quality"]["steps"] == 1


def test_artifact_loads_in_the_requested_compute_dtype(tiny_sd1):
    from mlx.utils import tree_flatten

    fp16 = open_artifact(convert(tiny_sd1, ConvertOptions(dtype="float16", check=False)).path)
    assert fp16.dtype == mx.float16
    for dtype in (mx.float16, mx.float32):
        params = dict(tree_flatten(fp16.load_unet(dtype).parameters()))
        assert {v.dtype for v in params.values()} == {dtype}
    q8 = open_artifact(
        convert(tiny_sd1, ConvertOptions(quantize=8, group_size=32, check=False)).path
    )
    packed = dict(tree_flatten(q8.load("unet", mx.float32, "fused").parameters()))
    layer = "down_blocks.1.resnets.0.conv1"
    assert packed[f"{layer}.weight"].dtype == mx.uint32
    assert packed[f"{layer}.scales"].dtype == mx.float32
    plain = dict(tree_flatten(q8.load("unet", mx.float32, "at-load").parameters()))
    assert plain[f"{layer}.weight"].shape == (64, 3, 3, 32) and f"{layer}.scales" not in plain


def test_rerun_is_up_to_date_force_reconverts_and_conflicts_are_refused(tiny_sd1):
    opts = ConvertOptions(dtype="float16", check=False)
    first = convert(tiny_sd1, opts)
    created = first.manifest.created
    again = convert(tiny_sd1, opts)
    assert again.up_to_date and again.manifest.created == created
    with pytest.raises(UsageError, match="already exists.*pass force to replace it") as e:
        convert(tiny_sd1, ConvertOptions(dtype="float32", name=first.name, check=False))
    # The library names its parameter; the CLI spells it as its flag.
    assert "pass --force to replace it" in e.value.describe(flag)
    forced = convert(
        tiny_sd1, ConvertOptions(dtype="float32", name=first.name, force=True, check=False)
    )
    assert not forced.up_to_date and forced.manifest.conversion["dtype"] == "float32"
    assert _store_entries() == [first.name]


def _copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_and_truncated_sources_leave_nothing(tiny_sd1, tmp_path):
    bad = _copy_model(tiny_sd1, tmp_path / "bad")
    weights = bad / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        convert(bad, ConvertOptions(check=False))
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + data[100:200])
    with pytest.raises(ModelError, match="corrupt"):
        convert(bad, ConvertOptions(check=False))
    assert _store_entries() == []


def test_unknown_weight_key_and_unknown_family_are_refused(tiny_sd1, tmp_path):
    from safetensors.numpy import load_file, save_file

    bad = _copy_model(tiny_sd1, tmp_path / "bad")
    path = bad / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(path)
    tensors["decoder.mystery.weight"] = np.zeros((3,), np.float32)
    save_file(tensors, path)
    with pytest.raises(WeightMappingError, match="decoder.mystery.weight"):
        convert(bad, ConvertOptions(check=False))
    index = json.loads((bad / "model_index.json").read_text())
    (bad / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    with pytest.raises(UnsupportedModelError, match="FLUX"):
        convert(bad, ConvertOptions(check=False))
    assert _store_entries() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_store_is_a_clear_error(tiny_sd1):
    store.models_dir().mkdir(parents=True)
    store.models_dir().chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            convert(tiny_sd1, ConvertOptions(check=False))
    finally:
        store.models_dir().chmod(0o700)


def test_store_that_is_a_file_is_a_clear_error(tiny_sd1):
    # Works as root too: the store path exists but is a regular file.
    store.home().mkdir(parents=True, exist_ok=True)
    store.models_dir().write_text("not a directory")
    with pytest.raises(OutputError, match="cannot write to the model store"):
        convert(tiny_sd1, ConvertOptions(check=False))


def test_interrupt_or_write_failure_leaves_nothing_visible(tiny_sd1, monkeypatch):
    real = convert_module.convert_component

    def interrupted(source, component, options, out_dir):
        if component == "unet":
            raise KeyboardInterrupt
        return real(source, component, options, out_dir)

    monkeypatch.setattr(convert_module, "convert_component", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(tiny_sd1, ConvertOptions(check=False))
    assert _store_entries() == []

    def disk_full(path, arrays, metadata=None):
        raise RuntimeError("[save_safetensors] No space left on device")

    monkeypatch.setattr(convert_module, "convert_component", real)
    monkeypatch.setattr(mx, "save_safetensors", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        convert(tiny_sd1, ConvertOptions(check=False))
    assert _store_entries() == []


def test_min_psnr_failure_writes_nothing(tiny_sd1):
    with pytest.raises(QualityError, match="below the minimum of 99 dB"):
        convert(tiny_sd1, ConvertOptions(quantize=4, group_size=32, check_steps=1, min_psnr=99))
    assert _store_entries() == []


def test_bad_options_are_usage_errors(tiny_sd1):
    for opts, match in [
        (ConvertOptions(dtype="float64"), "dtype 'float64' is not supported; choose one of"),
        (ConvertOptions(quantize=3), r"quantization to 3 bits is not supported; choose one of"),
        (ConvertOptions(quantize=4, group_size=48), "group size 48 is not supported"),
        (ConvertOptions(name="Bad Name"), "invalid"),
    ]:
        with pytest.raises(UsageError, match=match):
            convert(tiny_sd1, opts)


def test_every_kind_of_model_files_opens_as_one_model_source(tiny_sd1, tmp_path, monkeypatch):
    """A diffusers folder, a cache snapshot, a single-file checkpoint and a store artifact are
    one ModelSource type, and each loads the same UNet weights."""
    from mlx.utils import tree_flatten
    from tiny_sd import make_checkpoint

    from edgegen.convert import open_source
    from edgegen.converters.source import ModelSource

    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_sd1, snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    checkpoint = make_checkpoint(tiny_sd1, "sd1", tmp_path / "tiny.safetensors")
    # The checkpoint takes its configs from the folder: the preset ones are full-size SD 1.5.
    by_checkpoint = open_source(checkpoint, config_from=tiny_sd1)
    artifact = open_model(convert(tiny_sd1, ConvertOptions(dtype="float32", check=False)).name)
    sources = {
        "folder": open_model(tiny_sd1),
        "snapshot": open_model("org/tiny"),
        "checkpoint": by_checkpoint,
        "artifact": artifact,
    }
    assert {type(s) for s in sources.values()} == {ModelSource}
    assert [s.kind for s in sources.values()] == [
        "diffusers",
        "diffusers",
        "checkpoint",
        "artifact",
    ]
    assert sources["snapshot"].name == "org/tiny"
    assert {s.family for s in sources.values()} == {"sd1"}
    assert {tuple(s.components) for s in sources.values()} == {("text_encoder", "unet", "vae")}
    unets = {
        k: dict(tree_flatten(s.load_unet(mx.float32).parameters())) for k, s in sources.items()
    }
    ref = unets.pop("folder")
    for kind, params in unets.items():
        assert params.keys() == ref.keys(), kind
        assert all(mx.array_equal(params[k], ref[k]).item() for k in ref), kind


def test_a_turbo_folder_generates_with_turbo_defaults(tiny_sd1, tmp_path):
    # Named like SD-Turbo: one step without guidance unless asked, as its model card says;
    # the same defaults its converted artifact records.
    turbo = tmp_path / "sd-turbo"
    shutil.copytree(tiny_sd1, turbo)
    assert open_model(turbo).defaults == {"steps": 1, "guidance": 0.0}
    assert StableDiffusion(open_model(turbo)).settings(None, None) == (1, 0.0)
    assert StableDiffusion(open_model(tiny_sd1)).settings(None, None) == (
        GenerationParams.steps,
        GenerationParams.guidance,
    )
    result = convert(turbo, ConvertOptions(dtype="float32", check=False))
    assert result.manifest.defaults == {"steps": 1, "guidance": 0.0}
