"""Quantized SD 1.5 UNet: size on disk, peak memory and step time, in one run.

An SD 1.5-size UNet with random weights (diffusers' UNet2DConditionModel, seeded) is saved as a
diffusers folder, converted by edgegen's own writer to float16, 8-bit and 4-bit artifacts, and
one denoising step (batch 2 as classifier-free guidance runs it, 512×512) is timed for each, and
for diffusers/PyTorch float32 on the CPU. Each variant runs in its own process so its peak
memory is its own. Ratios are printed against the float16 artifact and against PyTorch.

Quantized variants are timed with each runtime (``converters/quantize.py``): ``at-load``
(dequantized once; the CPU default) and ``on-the-fly`` (dequantized per call, small memory).
``fused`` (MLX's quantized matmul, the Apple-GPU path) and float16 *compute* have no fast CPU
kernel; ``--small`` times them at 128×128 so the run stays short.

    .venv/bin/python benchmarks/bench_quant.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_quant.py --small    # adds fp16/fused compute at 128²
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edgegen  # noqa: F401  (optimized BLAS before mlx)

SD15_UNET = dict(
    sample_size=64,
    cross_attention_dim=768,
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
)
VARIANTS = {  # name → (artifact, compute dtype, quantized runtime)
    "fp16 (fp32 compute)": ("fp16", "float32", None),
    "8-bit at-load": ("q8", "float32", "at-load"),
    "4-bit at-load": ("q4", "float32", "at-load"),
    "8-bit on-the-fly": ("q8", "float32", "on-the-fly"),
    "4-bit on-the-fly": ("q4", "float32", "on-the-fly"),
}
SMALL_SIZE = 128
SMALL = {  # timed at SMALL_SIZE only: no fast CPU kernel
    "fp16 (fp16 compute)": ("fp16", "float16", None),
    "4-bit fused": ("q4", "float16", "fused"),
}


def build(work: Path) -> dict:
    """Save the random UNet and convert it; return sizes and conversion times."""
    import torch
    from diffusers import UNet2DConditionModel

    from edgegen.convert import ConvertOptions, convert_component
    from edgegen.converters.safetensors_io import read_component
    from edgegen.converters.source import ModelSource

    src = work / "unet"
    if not src.exists():
        torch.manual_seed(0)
        UNet2DConditionModel(**SD15_UNET).save_pretrained(src, safe_serialization=True)
    config = json.loads((src / "config.json").read_text())
    source = ModelSource(
        name="sd15-random", family="sd1", kind="diffusers", root=work, configs={"unet": config},
        tokenizers={}, files={}, read=lambda component: read_component(src),
    )  # fmt: skip
    info = {"source_bytes": sum(p.stat().st_size for p in src.glob("*.safetensors"))}
    for name, opts in {
        "fp16": ConvertOptions(dtype="float16"),
        "q8": ConvertOptions(quantize=8),
        "q4": ConvertOptions(quantize=4),
    }.items():
        out = work / name
        out.mkdir(exist_ok=True)
        t = time.perf_counter()
        entry = convert_component(source, "unet", opts, out)
        info[name] = {
            "bytes": entry.bytes,
            "seconds": time.perf_counter() - t,
            "quantization": entry.to_dict()["quantization"],
            "config": config,
        }
    (work / "info.json").write_text(json.dumps(info))
    return info


def run_mlx(
    work: Path, artifact: str, dtype: str, runtime: str | None, size: int, steps: int, batch: int
):
    import mlx.core as mx

    from edgegen.converters.components import build_module
    from edgegen.converters.quantize import QuantPlan
    from edgegen.converters.source import DTYPES, load_weights_file

    info = json.loads((work / "info.json").read_text())[artifact]
    t = time.perf_counter()
    unet = build_module("unet", info["config"])
    load_weights_file(
        unet, work / artifact / "unet.safetensors",
        QuantPlan.from_manifest(info["quantization"]) if info["quantization"] else None,
        DTYPES[dtype], runtime,
    )  # fmt: skip
    mx.eval(unet.parameters())
    load = time.perf_counter() - t
    cast = DTYPES[dtype]
    key = mx.random.key(0)
    x = mx.random.normal((batch, size // 8, size // 8, 4), key=key).astype(cast)
    ctx = mx.random.normal((batch, 77, 768), key=key).astype(cast)
    times = []
    for _ in range(steps + 1):  # the first step warms up (compiles fused kernels)
        t = time.perf_counter()
        mx.eval(unet(x, mx.full((batch,), 500.0), ctx))
        times.append(time.perf_counter() - t)
    return {"load_s": load, "step_s": times[1:], "peak_mlx": mx.get_peak_memory()}


def run_torch(work: Path, size: int, steps: int, batch: int):
    import torch
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(work / "unet").eval()
    load = time.perf_counter() - t
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, size // 8, size // 8, generator=g)
    ctx = torch.randn(batch, 77, 768, generator=g)
    times = []
    with torch.no_grad():
        for _ in range(steps + 1):
            t = time.perf_counter()
            unet(x, torch.full((batch,), 500.0), ctx)
            times.append(time.perf_counter() - t)
    return {"load_s": load, "step_s": times[1:], "peak_mlx": None}


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.run == "torch fp32":
        result = run_torch(work, args.size, args.steps, args.batch)
    else:
        artifact, dtype, runtime = {**VARIANTS, **SMALL}[args.run]
        result = run_mlx(work, artifact, dtype, runtime, args.size, args.steps, args.batch)
    result["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(result))


def measure(
    name: str, work: Path, size: int, steps: int, timeout: float, batch: int = 2
) -> dict | None:
    """Run one variant in a fresh process; None (and a line saying why) if it failed or took
    longer than ``timeout`` seconds."""
    cmd = [sys.executable, __file__, "--run", name, "--work", str(work)]
    cmd += ["--size", str(size), "--steps", str(steps), "--batch", str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{name} took over {timeout:.0f}s")
        return None
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        killed = " (killed: out of memory?)" if out.returncode < 0 else ""
        print(f"{name} failed, exit status {out.returncode}{killed}: {out.stderr[-500:]}")
        return None
    return json.loads(line[0][len("RESULT ") :])


def gb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2, help="2 = classifier-free guidance")
    ap.add_argument("--small", action="store_true", help="also time fp16/fused compute, small")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per variant")
    ap.add_argument("--work", default=None, help="keep weights here between runs")
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.run:
        child(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-quant-"))
    t = time.perf_counter()
    info = build(work)
    print(f"built and converted the SD 1.5 UNet in {time.perf_counter() - t:.0f}s ({work})")
    fp16_bytes = info["fp16"]["bytes"]
    print(f"\non disk: diffusers fp32 {gb(info['source_bytes'])}")
    for name in ("fp16", "q8", "q4"):
        b = info[name]["bytes"]
        print(
            f"  {name:5} {gb(b)}  {b / fp16_bytes:.2f}× fp16  (written in {info[name]['seconds']:.0f}s)"
        )

    runs = {}
    for name in ("torch fp32", *VARIANTS):
        runs[name] = measure(name, work, args.size, args.steps, args.timeout, args.batch)
    base, ref = runs["fp16 (fp32 compute)"], runs["torch fp32"]
    print(f"\none UNet step, batch {args.batch}, {args.size}×{args.size}, best of {args.steps}")
    print(
        f"{'variant':22} {'step':>8} {'vs fp16':>8} {'vs torch':>9} {'peak mlx':>10} {'peak rss':>10}"
    )
    for name, r in runs.items():
        if r is None:
            print(f"{name:22} (no result: see above)")
            continue
        step = min(r["step_s"])
        vs_fp16 = f"{step / min(base['step_s']):7.2f}×" if base else "      -"
        vs_torch = f"{step / min(ref['step_s']):8.2f}×" if ref else "       -"
        print(
            f"{name:22} {step:7.2f}s {vs_fp16} {vs_torch} {gb(r['peak_mlx']):>10} {gb(r['maxrss']):>10}"
        )
    if args.small:
        print(f"\n{SMALL_SIZE}×{SMALL_SIZE} (no fast CPU kernel for the last two: Apple-GPU paths)")
        for name in ("fp16 (fp32 compute)", "4-bit on-the-fly", *SMALL):
            r = measure(name, work, SMALL_SIZE, 1, args.timeout, args.batch)
            if r is not None:
                print(f"{name:22} {min(r['step_s']):7.2f}s  peak {gb(r['peak_mlx'])}")


if __name__ == "__main__":
    main()
