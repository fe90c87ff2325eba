"""Generation estimates its memory before it starts: it decodes tile by tile where a whole
decode would not fit, and refuses, in one line, what cannot fit at all (issue 18: 8192² grew
without a message until the kernel killed it)."""

from __future__ import annotations

import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

import edgegen.device
from edgegen.errors import UsageError
from edgegen.params import GenerationParams
from edgegen.pipelines import load_pipeline

GiB = 2**30


@pytest.fixture(scope="module")
def sd():
    return load_pipeline(None)


@pytest.mark.parametrize("size", [(256, 256), (256, 512)])
def test_estimate_bounds_the_measured_peak(sd, size):
    w, h = size
    p = GenerationParams("a red sun over a calm sea", "", 1, 7.5, None, 1, w, h)
    need = sd.memory_needed(w, h)
    x = None
    mx.eval(sd.unet.parameters(), sd.vae.parameters(), sd.text_encoder.parameters())
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    for step in sd.denoise(p):
        mx.eval(step.latents)
        x = step.latents
    unet = mx.get_peak_memory() - base
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    mx.eval(sd.decode_float(x))
    decode = mx.get_peak_memory() - base
    print(f"{w}x{h}: unet {unet / 2**20:.0f} MB (estimate {need['unet'] / 2**20:.0f}), "
          f"decode {decode / 2**20:.0f} MB (estimate {need['decode'] / 2**20:.0f})")  # fmt: skip
    assert unet <= need["unet"] <= 6 * unet + 8 * 2**20
    assert decode <= need["decode"] <= 3 * decode


def test_refuses_what_cannot_fit_and_names_a_size_that_does(sd, monkeypatch):
    monkeypatch.setattr(edgegen.device, "available_memory", lambda: 2 * GiB)
    with pytest.raises(UsageError) as e:
        sd.check_memory(4096, 4096)
    message = str(e.value)
    assert "generating 4096x4096 needs about" in message and "2.0 GiB available" in message
    fit = message.split("; ")[1].split(" would fit")[0]
    fw, fh = (int(v) for v in fit.split("x"))
    assert fw == fh and fw % 64 == 0 and fw < 4096
    assert sd.check_memory(fw, fh) in (True, False)  # the size it names does fit


def test_decodes_in_tiles_when_a_whole_decode_would_not_fit(sd, monkeypatch):
    p = GenerationParams("a red sun over a calm sea", "", 2, 7.5, None, 3, 1024, 1024)
    whole = sd.generate(p)[0]
    need = sd.memory_needed(1024, 1024, cfg=False)
    assert need["decode_tiled"] < need["decode"]
    between = (need["decode_tiled"] + need["decode"]) / 2 / 0.8
    monkeypatch.setattr(edgegen.device, "available_memory", lambda: int(between))
    calls = []
    tiled = sd.vae.decode_tiled
    monkeypatch.setattr(sd.vae, "decode_tiled", lambda z: calls.append(z.shape) or tiled(z))
    image = sd.generate(p)[0]
    assert calls == [(1, 128, 128, 4)]
    assert image.shape == whole.shape == (1024, 1024, 3)
    mse = np.mean((image.astype(np.float64) - whole.astype(np.float64)) ** 2)
    # Each tile normalizes with its own GroupNorm statistics: on the built-in VAE (4 groups)
    # that costs ~20 dB against the whole decode; the picture is kept, not replaced by noise.
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 15


def test_a_huge_size_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "big.png"
    r = subprocess.run(
        [sys.executable, "-m", "edgegen", "generate", "x", "--size", "8192x8192", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "8192x8192 needs about" in r.stderr
    assert "would fit" in r.stderr and not out.exists()
