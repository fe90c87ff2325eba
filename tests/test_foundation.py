"""BLAS loading, safetensors validation, weight mapping, store and atomic output."""

import json
import struct
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from edgegen import store
from edgegen.converters.manifest import Manifest
from edgegen.converters.mapping import Rule, map_weights
from edgegen.converters.safetensors_io import read_component, read_header
from edgegen.errors import ModelError, UsageError, WeightMappingError
from edgegen.fileio import atomic_write_text
from edgegen.params import GenerationParams, a1111_parameters, portrait_size


def _blas_in_subprocess(value):
    code = "import edgegen, json; print(json.dumps(edgegen.BLAS.__dict__))"
    env = {"EDGEGEN_BLAS": value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_blas_can_be_disabled():
    assert _blas_in_subprocess("none")["name"] == "reference"


def test_blas_auto_loads_an_optimized_library_when_present():
    info = _blas_in_subprocess("auto")
    if info["name"] == "reference":
        pytest.skip("no OpenBLAS/MKL on this machine: " + info["reason"])
    assert info["name"] in {"openblas", "mkl", "system"}


def test_matmul_is_correct_with_loaded_blas():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 96, 80)).astype(np.float32)
    b = rng.standard_normal((80, 33)).astype(np.float32)
    np.testing.assert_allclose(np.array(mx.array(a) @ mx.array(b)), a @ b, rtol=1e-4, atol=1e-4)


def _write_safetensors(path, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def test_safetensors_truncation_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"w": np.ones((64, 64), np.float32)})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated: tensor 'w'"):
        read_header(path)


def test_safetensors_bad_header(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_header(path)


def test_sharded_component(tmp_path):
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": np.ones(3, np.float32)})
    _write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {"b": np.zeros(2, np.float16)}
    )
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = read_component(tmp_path)
    assert set(weights) == {"a", "b"} and weights["b"].dtype == mx.float16


def test_pickle_only_component_is_refused(tmp_path):
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="pickle"):
        read_component(tmp_path)


RULES = [
    Rule(r"(.*)\.conv\.weight", r"\1.conv.weight", "conv2d"),
    Rule(r"(.*)", r"\1"),
]


def test_mapping_transposes_and_checks():
    src = {"a.conv.weight": mx.zeros((8, 3, 3, 3)), "a.conv.bias": mx.zeros((8,))}
    out = map_weights(src, RULES, {"a.conv.weight": (8, 3, 3, 3), "a.conv.bias": (8,)}, "x")
    assert out["a.conv.weight"].shape == (8, 3, 3, 3)
    src = {"a.conv.weight": mx.zeros((8, 4, 3, 3)), "a.conv.bias": mx.zeros((8,))}
    out = map_weights(src, RULES, {"a.conv.weight": (8, 3, 3, 4), "a.conv.bias": (8,)}, "x")
    assert out["a.conv.weight"].shape == (8, 3, 3, 4)


def test_mapping_is_strict():
    shapes = {"a.bias": (2,)}
    with pytest.raises(WeightMappingError, match="'b.bias'.*does not have"):
        map_weights({"a.bias": mx.zeros(2), "b.bias": mx.zeros(2)}, RULES, shapes, "unet")
    with pytest.raises(WeightMappingError, match="lacks 'a.bias'"):
        map_weights({}, RULES, shapes, "unet")
    with pytest.raises(WeightMappingError, match=r"shape \(3,\)"):
        map_weights({"a.bias": mx.zeros(3)}, RULES, shapes, "unet")
    with pytest.raises(WeightMappingError, match="no mapping rule"):
        map_weights({"z": mx.zeros(2)}, [Rule("a.*", r"\g<0>")], shapes, "unet")


def test_store_artifact_is_atomic(tmp_path):
    with pytest.raises(RuntimeError), store.new_artifact("m1") as d:
        (d / "w.bin").write_bytes(b"123")
        raise RuntimeError("crash mid-conversion")
    assert not (store.models_dir() / "m1").exists()
    assert [p for p in store.models_dir().iterdir()] == []
    with store.new_artifact("m1") as d:
        (d / store.MANIFEST).write_text('{"format": "edgegen-model", "format_version": 1}')
    assert store.find("m1").name == "m1"
    with pytest.raises(UsageError, match="already exists"), store.new_artifact("m1"):
        pass


def test_store_refuses_newer_format(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "edgegen-model", "format_version": 999, "name": "x"})
    )
    with pytest.raises(ModelError, match="format version 999"):
        Manifest.read(tmp_path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(Exception, match="No space left"):
        atomic_write_text(target, "hello")
    assert list(tmp_path.iterdir()) == []


def test_portrait_sizes():
    assert portrait_size(512) == (384, 704)
    assert portrait_size(768) == (576, 1024)
    assert portrait_size(1024) == (768, 1344)


def test_a1111_text():
    p = GenerationParams("a cat", "dog", steps=20, guidance=7.5, seed=3, clip_skip=1)
    text = a1111_parameters(p, 512, 768, "dpmpp_2m", "sd15", "0.1.0")
    assert text.splitlines() == [
        "a cat",
        "Negative prompt: dog",
        "Steps: 20, Sampler: dpmpp_2m, CFG scale: 7.5, Seed: 3, Size: 512x768, Model: sd15, Clip skip: 2, Version: edgegen 0.1.0",
    ]


def test_device_policy_keeps_the_vae_in_float32_where_half_precision_breaks_it():
    from edgegen.device import vae_dtype

    sdxl = {"force_upcast": True}
    assert vae_dtype(mx.float16, "sdxl", sdxl) == mx.float32
    assert vae_dtype(mx.float16, "sdxl", {"force_upcast": False}) == mx.float16
    assert vae_dtype(mx.bfloat16, "sdxl", sdxl) == mx.bfloat16  # float32's range
    assert vae_dtype(mx.float16, "sd1", {}) == mx.float16
    # An artifact that stored its VAE in float32 did so on purpose.
    assert vae_dtype(mx.float16, "sd1", {}, stored="float32") == mx.float32
    assert vae_dtype(mx.float32, "sdxl", sdxl) == mx.float32


def test_library_errors_name_parameters_and_the_cli_spells_flags():
    from edgegen.cli import flag

    e = UsageError("model 'm' already exists", option="force", advice="pass {} to replace it")
    assert str(e) == "model 'm' already exists; pass force to replace it"
    assert e.describe(flag) == "model 'm' already exists; pass --force to replace it"
    assert flag("config_from") == "--config-from"
    assert str(UsageError("plain")) == "plain"
