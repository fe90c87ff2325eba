"""Artifacts written by every earlier format version keep loading; newer ones are refused.

The fixtures in tests/artifacts/format-<N>/ come from tests/make_artifacts.py, run once per
format version and never regenerated.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from float32 import VOICE_PEAK_BOUND, peak_error
from make_artifacts import NAME, VOICE, render, speak

from edgegen import store
from edgegen.cli import cli
from edgegen.converters.source import open_artifact
from edgegen.errors import ModelError

ARTIFACTS = Path(__file__).parent / "artifacts"


def test_a_fixture_exists_for_every_format_version():
    have = sorted(int(p.name.split("-")[1]) for p in ARTIFACTS.glob("format-*"))
    assert have == list(range(1, store.FORMAT_VERSION + 1))


@pytest.mark.parametrize("folder", sorted(ARTIFACTS.glob("format-*")), ids=lambda p: p.name)
def test_old_artifact_loads_and_renders_what_it_rendered_then(folder):
    model = folder / NAME
    image = render(model)
    expected = np.load(folder / "expected.npy")
    diff = np.abs(image.astype(np.int32) - expected.astype(np.int32))
    # Kernels may change (chunked attention, fused norms) but not the picture.
    assert diff.mean() <= 1.0 and diff.max() <= 16, (diff.mean(), diff.max())
    # And through the store, by name, as users reach it.
    shutil.copytree(model, store.models_dir() / NAME)
    result = CliRunner().invoke(cli, ["models", "verify", NAME])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("folder", sorted(ARTIFACTS.glob("format-*")), ids=lambda p: p.name)
def test_old_voice_loads_and_speaks_what_it_spoke_then(folder):
    """Voices already in users' stores (format 1 recorded quantization by tensor key) load."""
    audio = speak(folder / VOICE)
    expected = np.load(folder / "expected-voice.npy")
    assert audio.shape == expected.shape
    assert peak_error(audio, expected) <= VOICE_PEAK_BOUND
    shutil.copytree(folder / VOICE, store.models_dir() / VOICE)
    result = CliRunner().invoke(cli, ["models", "verify", VOICE])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["models", "info", VOICE])
    assert listed.exit_code == 0 and "8-bit g64" in listed.output, listed.output


def test_manifests_read_and_write_back_unchanged(tmp_path):
    """Reading a manifest and writing it again keeps every field (unknown ones too)."""
    from edgegen.converters.manifest import Manifest

    for folder in sorted(ARTIFACTS.glob("format-*/*/")):
        original = json.loads((folder / "manifest.json").read_text())
        if original["format_version"] != store.FORMAT_VERSION:
            continue
        manifest = Manifest.read(folder)
        assert manifest.to_dict() == original
        out = tmp_path / folder.name
        out.mkdir()
        manifest.write(out)
        assert Manifest.read(out) == manifest


def _copy_with(tmp_path, edit) -> Path:
    newest = sorted(ARTIFACTS.glob("format-*"))[-1] / NAME
    dst = tmp_path / NAME
    shutil.copytree(newest, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_newer_format_is_refused_with_a_clear_message(tmp_path):
    path = _copy_with(tmp_path, lambda m: m.update(format_version=store.FORMAT_VERSION + 1))
    with pytest.raises(ModelError, match="newer than this edgegen reads.*upgrade edgegen"):
        open_artifact(path)
    result = CliRunner().invoke(cli, ["generate", "x", "--model", str(path), "--steps", "1"])
    assert result.exit_code == 4 and "upgrade edgegen" in result.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["targets"]["mlx"]["components"].pop("unet"), "lacks component 'unet'"),
        (lambda m: m.update(family="flux"), "family 'flux' is unknown"),
        (lambda m: m["config"].pop("scheduler"), "scheduler config"),
        (lambda m: m["targets"]["mlx"]["components"]["vae"].update(dtype="int3"), "dtype"),
    ],
)
def test_broken_manifest_is_one_line_model_error(tmp_path, edit, message):
    with pytest.raises(ModelError, match=message):
        open_artifact(_copy_with(tmp_path, edit))


def test_weights_that_do_not_match_the_manifest_are_named(tmp_path):
    import mlx.core as mx

    def shrink(m):
        m["config"]["vae"]["block_out_channels"] = [8, 16]

    path = _copy_with(tmp_path, shrink)
    with pytest.raises(ModelError, match="vae.safetensors' does not match its manifest"):
        open_artifact(path).load_vae(mx.float32)


def test_voice_quantization_picks_the_layers_format_1_picked():
    """One quantization scheme for every kind: the plan for a voice selects exactly the kernels
    the old voice-only scheme quantized (recorded by tensor key in the format-1 fixture)."""
    from edgegen.converters.manifest import Manifest
    from edgegen.converters.quantize import plan
    from edgegen.models.vits import Vits, VitsConfig

    folder = ARTIFACTS / "format-1" / VOICE
    old = Manifest.read(folder).component("vits").quantization
    assert old.naming == "weight" and old.layers
    config = dict(Manifest.read(folder).config)
    config.pop("voice_config")
    new = plan("vits", Vits(VitsConfig.from_dict(config)), old.bits, old.group_size)
    assert sorted(new.layers) == sorted(old.layers)
    assert new.naming == "module" and new.to_manifest()["layers"] == list(new.layers)
