"""Artifacts written by every earlier format version keep loading; newer ones are refused.

The fixtures in tests/artifacts/format-<N>/ come from tests/make_artifacts.py, run once per
format version and never regenerated.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgegen import store
from edgegen.artifact import StoreModel
from edgegen.cli import cli
from edgegen.errors import ModelError

ARTIFACTS = Path(__file__).parent / "artifacts"
sys.path.insert(0, str(Path(__file__).parent))
from make_artifacts import NAME, render  # noqa: E402


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
        StoreModel(path)
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
        StoreModel(_copy_with(tmp_path, edit))


def test_weights_that_do_not_match_the_manifest_are_named(tmp_path):
    import mlx.core as mx

    def shrink(m):
        m["config"]["vae"]["block_out_channels"] = [8, 16]

    path = _copy_with(tmp_path, shrink)
    with pytest.raises(ModelError, match="vae.safetensors' does not match its manifest"):
        StoreModel(path).load_vae(mx.float32)
