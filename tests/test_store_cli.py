"""``edgegen convert`` and ``edgegen models`` through click's CliRunner: output, exit codes."""

import json
import shutil

import pytest
from click.testing import CliRunner

from edgegen import store
from edgegen.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _convert(src, *extra):
    result = run("convert", src, "--no-check", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_convert_reports_components_and_rerun_is_up_to_date(tiny_sd1):
    result = run("convert", tiny_sd1, "-q", "8", "--group-size", "32", "--check-steps", "1")
    assert result.exit_code == 0, result.output
    for word in ("unet", "vae", "text_encoder", "8-bit g32", "PSNR", "tiny-sd1-q8"):
        assert word in result.output
    again = run("convert", tiny_sd1, "-q", "8", "--group-size", "32")
    assert again.exit_code == 0 and "up to date" in again.output


def test_convert_errors_are_one_line_with_exit_codes(tiny_sd1, tmp_path):
    _convert(tiny_sd1, "--name", "taken")
    cases = [
        (("convert", tiny_sd1, "--name", "taken", "--dtype", "float32"), 2, "--force"),
        (("convert", tmp_path / "nope"), 3, "does not exist"),
        (("convert", tmp_path), 4, "not a diffusers model"),
        (("convert", tiny_sd1, "--name", "Bad/Name"), 2, "invalid"),
        (("convert", tiny_sd1, "--name", "q", "-q", "4", "--min-psnr", "99", "--check-steps", "1"), 7, "min-psnr"),
    ]  # fmt: skip
    for args, code, text in cases:
        result = run(*args)
        assert result.exit_code == code, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and text in lines[0], result.output
        assert "Traceback" not in result.output
    assert [p.name for p in store.models_dir().iterdir()] == ["taken"]
    forced = run(
        "convert", tiny_sd1, "--name", "taken", "--dtype", "float32", "--no-check", "--force"
    )
    assert forced.exit_code == 0, forced.output


def test_models_list_info_verify_rm(tiny_sd1, tiny_sd2):
    empty = run("models", "list")
    assert empty.exit_code == 0 and "No models" in empty.output
    _convert(tiny_sd1, "--name", "one", "-q", "4", "--group-size", "32")
    _convert(tiny_sd2, "--name", "two")

    listed = run("models", "list")
    assert listed.exit_code == 0
    rows = {line.split()[0]: line for line in listed.output.splitlines() if line.strip()}
    assert "sd1" in rows["one"] and "4-bit" in rows["one"] and "MB" in rows["one"]
    assert "float16" in rows["two"] and "diffusion" in rows["two"]

    info = run("models", "info", "one")
    assert info.exit_code == 0
    assert "4-bit g32 (float16)" in info.output and "unet" in info.output
    raw = run("models", "info", "two", "--json")
    assert json.loads(raw.output)["name"] == "two"

    ok = run("models", "verify", "one")
    assert ok.exit_code == 0 and "verified" in ok.output
    unet = store.find("one") / "unet.safetensors"
    data = bytearray(unet.read_bytes())
    data[-1] ^= 0xFF
    unet.write_bytes(bytes(data))
    damaged = run("models", "verify", "one")
    assert damaged.exit_code == 4 and "unet.safetensors has changed" in damaged.output
    (store.find("two") / "vae.safetensors").unlink()
    assert "vae.safetensors is missing" in run("models", "verify", "two").output

    removed = run("models", "rm", "one")
    assert removed.exit_code == 0 and "removed one" in removed.output
    missing = run("models", "info", "one")
    assert missing.exit_code == 3 and "two" in missing.output  # lists what the store has


def test_generate_accepts_store_name_and_artifact_path(tiny_sd1, tmp_path):
    _convert(tiny_sd1, "--name", "mine", "--dtype", "float32")
    for model in ("mine", store.find("mine")):
        out = tmp_path / "x.png"
        result = run("generate", "a sun", "--model", model, "--steps", "1", "--size", "64x64",
                     "-o", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert out.is_file()
        out.unlink()


def test_onnx_source_goes_to_the_voice_converter(tmp_path, monkeypatch):
    import edgegen.cli.speak as speak

    seen = {}

    def fake(src, name, quantize, force):
        seen.update(src=src, name=name, quantize=quantize, force=force)
        return tmp_path / "voice"

    monkeypatch.setattr(speak, "convert_voice", fake)
    result = run("convert", tmp_path / "v.onnx", "--name", "v", "-q", "8", "--force")
    assert result.exit_code == 0, result.output
    assert seen == {"src": tmp_path / "v.onnx", "name": "v", "quantize": 8, "force": True}


@pytest.mark.parametrize("cmd", ["info", "verify", "rm"])
def test_unknown_model_name_exit_3(cmd):
    result = run("models", cmd, "ghost")
    assert result.exit_code == 3 and "ghost" in result.output


def test_models_list_skips_hidden_temporary_dirs(tiny_sd1):
    _convert(tiny_sd1, "--name", "real")
    shutil.copytree(store.find("real"), store.models_dir() / ".half.abc")
    listed = run("models", "list")
    assert "real" in listed.output and "half" not in listed.output


def test_list_and_info_show_other_kinds_of_artifact():
    """Voices (written by the speech converter) share the store and the manifest format."""
    voice = store.models_dir() / "joe"
    voice.mkdir(parents=True)
    (voice / "vits.safetensors").write_bytes(b"x" * 2000)
    quant = {"bits": 8, "group_size": 64, "mode": "affine", "keys": ["dec.conv_pre.weight"]}
    component = {"file": "vits.safetensors", "dtype": "float32", "quantization": quant}
    (voice / "manifest.json").write_text(
        json.dumps(
            {
                "format": "edgegen-model",
                "format_version": 1,
                "name": "joe",
                "kind": "voice",
                "family": "piper-vits",
                "created": "2026-01-01T00:00:00+00:00",
                "targets": {"mlx": {"components": {"vits": component}}},
                "config": {},
            }
        )
    )
    listed = run("models", "list")
    assert listed.exit_code == 0 and "voice" in listed.output and "8-bit g64" in listed.output
    info = run("models", "info", "joe")
    assert info.exit_code == 0 and "piper-vits" in info.output


def test_working_directories_of_dead_writers_are_swept(tmp_path):
    import os
    import subprocess
    import sys

    from edgegen import store

    root = store.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = [root / f".big-model.{dead}.abc123_x", root / f".big-model.old-{dead}"]
    live = root / f".other.{os.getpid()}.zz9"
    for d in (*stale, live):
        (d / "unet").mkdir(parents=True)
        (d / "unet" / "w.safetensors").write_bytes(b"x" * 10)
    (root / ".cache-like").mkdir()  # not a working directory: left alone
    assert sorted(store.sweep_stale()) == sorted(stale)
    assert not any(d.exists() for d in stale)
    assert live.exists() and (root / ".cache-like").exists()
