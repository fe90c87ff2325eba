"""The CLI through click's CliRunner: help, exit codes, one-line errors, no partial output."""

import json
import shutil
import socket

import pytest
from click.testing import CliRunner
from PIL import Image

from edgegen.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for name in ("generate", "speak", "render", "doctor"):
        assert name in result.output
    assert run("generate", "--help").exit_code == 0


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "edgegen" in result.output


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--steps", "0"], 2, "steps must be ≥ 1, got 0"),
        (["--guidance", "-1"], 2, "guidance must be ≥ 0, got -1"),
        (["--size", "500x896"], 2, "width 500 is not a positive multiple of 64"),
        (["--size", "512x900"], 2, "height 900 is not a positive multiple of 64"),
        (["--scheduler", "nope"], 2, "'nope'"),
    ],
)
def test_bad_parameters(tiny_sd1, tmp_path, args, code, fragment):
    out = tmp_path / "x.png"
    result = run("generate", "a sun", "--model", str(tiny_sd1), "-o", str(out), *args)
    one_line_error(result, code, fragment)
    assert not out.exists()


def test_bad_size_syntax(tmp_path):
    result = run("generate", "a sun", "--model", str(tmp_path), "--size", "big")
    assert result.exit_code == 2 and "is not a size like 576x1024" in result.output


def test_missing_model_path(tmp_path):
    out = tmp_path / "x.png"
    result = run("generate", "a sun", "--model", str(tmp_path / "nope"), "-o", str(out))
    one_line_error(result, 3, "does not exist")
    assert not out.exists()


def test_uncached_repo_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    result = run("generate", "a sun", "--model", "someorg/somemodel")
    one_line_error(result, 3, "someorg/somemodel", "never downloads")


def test_folder_that_is_not_diffusers(tmp_path):
    (tmp_path / "weights.txt").write_text("hi")
    out = tmp_path / "x.png"
    result = run("generate", "a sun", "--model", str(tmp_path), "-o", str(out))
    one_line_error(result, 4, "not a diffusers model", "model_index.json")
    assert not out.exists()


def test_unsupported_architecture(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    result = run("generate", "a sun", "--model", str(tmp_path))
    one_line_error(result, 4, "FLUX", "FluxPipeline")


def test_truncated_safetensors(tiny_sd1, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_sd1, model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "x.png"
    result = run("generate", "a sun", "--model", str(model), "--steps", "1", "-o", str(out))
    one_line_error(result, 4, "truncated", "diffusion_pytorch_model.safetensors")
    assert not out.exists()
    assert not list(tmp_path.glob(".x*"))  # no temporary left behind either


def test_garbage_safetensors(tiny_sd1, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_sd1, model)
    (model / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 7)
    result = run(
        "generate", "a sun", "--model", str(model), "--steps", "1", "-o", str(tmp_path / "x.png")
    )
    one_line_error(result, 4, "not a safetensors file")


def test_generate_writes_png_with_parameters(tiny_sd1, tmp_path):
    out = tmp_path / "img.png"
    result = run(
        "generate",
        "a red sun",
        "--model",
        str(tiny_sd1),
        "--steps",
        "2",
        "--seed",
        "5",
        "--negative",
        "text",
        "--size",
        "64x128",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size == (64, 128)
    params = image.text["parameters"]
    assert params.splitlines()[0] == "a red sun"
    assert "Negative prompt: text" in params
    assert "Steps: 2" in params and "Seed: 5" in params and "Size: 64x128" in params
    assert str(out) in result.output


def test_generate_count_writes_one_file_per_seed(tiny_sd1, tmp_path):
    out = tmp_path / "img.png"
    result = run(
        "generate",
        "a sun",
        "--model",
        str(tiny_sd1),
        "--steps",
        "1",
        "--seed",
        "7",
        "--count",
        "2",
        "--size",
        "64x128",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["img-7.png", "img-8.png"]


def test_no_network_connections(tiny_sd1, tmp_path, monkeypatch):
    """Generation runs with every socket connection refused: nothing reaches the network."""
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    result = run(
        "generate",
        "a sun",
        "--model",
        str(tiny_sd1),
        "--steps",
        "1",
        "--size",
        "64x128",
        "-o",
        str(tmp_path / "x.png"),
    )
    assert result.exit_code == 0, result.output
    assert attempts == []


def test_help_does_not_import_heavy_modules():
    """``edgegen --help`` must stay instant: listing commands may not load MLX or PyAV."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from edgegen.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in ('mlx.core', 'av', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_doctor_reports_blas_store_and_speech_lanes(monkeypatch):
    monkeypatch.setenv("EDGEGEN_SPEECH_LANES", "3")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    for row in ("mlx", "blas", "store", "speech"):
        assert row in result.output
    assert "3 processes side by side" in result.output
    monkeypatch.setenv("EDGEGEN_SPEECH_LANES", "x")
    result = run("doctor")
    assert result.exit_code == 0 and "invalid: EDGEGEN_SPEECH_LANES='x'" in result.output


def _every_command():
    from edgegen.cli import COMMANDS
    from edgegen.cli.models import models

    return sorted(COMMANDS) + [f"models {name}" for name in models.commands]


@pytest.mark.parametrize("command", _every_command())
def test_help_ends_with_two_or_three_examples(command):
    result = run(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    examples = [line.strip() for line in lines[start + 1 :]]
    assert 2 <= len(examples) <= 3, examples
    assert all(f"edgegen {command.split()[0]}" in line for line in examples), examples
