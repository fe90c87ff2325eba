"""One SD1.5-size UNet denoising step: edgegen/MLX against diffusers/PyTorch, both fp32 on CPU.

The issue's benchmark: batch 2 (classifier-free guidance), 512×512 (64×64 latents), a (2, 77,
768) text context, random weights (diffusers' default UNet2DConditionModel config for SD 1.5).
diffusers builds and saves the model; edgegen loads that folder with ``load_component``, so both run
the same weights and the script reports how far apart the outputs are. Each side is warmed up
once, then the runs alternate (diffusers, edgegen, diffusers, ...) so that other load on the
machine hits both alike; medians are reported.

diffusers runs in a child process that never imports edgegen: edgegen puts OpenBLAS into the
global symbol scope, where it would replace the BLAS routines inside PyTorch (measured: 2.7×
slower diffusers). The child gets the same glibc malloc setting edgegen uses (it speeds up
PyTorch as well), so the two differ only in their implementations.

FLOPs are counted analytically while edgegen builds its (lazy) graph: 2·MACs of every
convolution (counted as direct convolution, although edgegen's 3×3 convs use Winograd), linear
layer and the two attention matmuls; element-wise work is not counted.

    .venv/bin/python benchmarks/bench_unet.py [--runs 3] [--skip-diffusers]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

# Keep this module's top level free of edgegen/mlx/torch: the diffusers worker is spawned and
# re-imports it.
SD15 = dict(cross_attention_dim=768, attention_head_dim=8, sample_size=64)


def _diffusers_worker(conn, folder: str) -> None:
    # The same glibc setting as edgegen._blas.keep_freed_memory, without importing
    # edgegen (whose import loads OpenBLAS).
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    ctypes.CDLL("libc.so.6").mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    import torch
    from diffusers import UNet2DConditionModel

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = UNet2DConditionModel(**SD15).eval()
    model.save_pretrained(folder)
    conn.send(torch.get_num_threads())
    x, t, ctx = (torch.from_numpy(a) for a in conn.recv())
    while conn.recv() == "run":
        start = time.perf_counter()
        out = model(x, t, ctx).sample
        conn.send((time.perf_counter() - start, out.numpy()))


def count_flops(model, x, t, ctx) -> Counter:
    """FLOPs per op kind of one forward pass, from the shapes of the lazily built graph."""
    import mlx.nn as nn

    from edgegen.models import attention as attention_module

    flops: Counter = Counter()
    depth = [0]  # a conv subclass may fall back to its parent's __call__: count it once
    patched = []

    def counting(cls, kind: str) -> None:
        original = cls.__call__

        def call(self, x, *args, **kwargs):
            depth[0] += 1
            try:
                y = original(self, x, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                if kind == "linear":
                    flops["linear"] += 2 * y.size * self.weight.shape[1]
                elif kind == "geglu":  # two matmuls onto the halves of proj
                    flops["linear"] += 2 * 2 * y.size * self.proj.weight.shape[1]
                else:
                    o, kh, kw, i = self.weight.shape
                    flops[f"conv{kh}x{kw}"] += 2 * y.size * kh * kw * i
            return y

        patched.append((cls, original))
        cls.__call__ = call

    for cls in {type(m) for _, m in model.named_modules()}:
        if issubclass(cls, nn.Conv2d):
            counting(cls, "conv")
        elif issubclass(cls, nn.Linear):
            counting(cls, "linear")
        elif cls is attention_module.GEGLU:
            counting(cls, "geglu")
    attend = attention_module.attention

    def attention(q, k, v, heads, *args, **kwargs):
        flops["attention"] += 4 * q.shape[0] * q.shape[1] * k.shape[1] * q.shape[2]
        return attend(q, k, v, heads, *args, **kwargs)

    attention_module.attention = attention
    try:
        model(x, t, ctx)  # builds the graph only; nothing is evaluated
    finally:
        for cls, original in patched:
            cls.__call__ = original
        attention_module.attention = attend
    return flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per implementation (≥ 3)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (latents /8)")
    ap.add_argument("--skip-diffusers", action="store_true", help="time edgegen only")
    args = ap.parse_args()

    import edgegen  # isort: skip  (loads the optimized BLAS before mlx is imported)
    import mlx.core as mx  # isort: skip
    import numpy as np  # isort: skip

    from edgegen.converters.source import load_component

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "unet")
        ctx_ = mp.get_context("spawn")
        here, there = ctx_.Pipe()
        worker = ctx_.Process(target=_diffusers_worker, args=(there, folder), daemon=True)
        worker.start()
        torch_threads = here.recv()  # the model is saved
        ours = load_component("unet", Path(folder))
        if args.skip_diffusers:
            here.send("stop")
            worker.join()

        side = args.size // 8
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 4, side, side), dtype=np.float32)
        t = np.array([500, 500], dtype=np.int64)
        ctx = rng.standard_normal((2, 77, 768), dtype=np.float32)
        mx_x, mx_t, mx_ctx = mx.array(x.transpose(0, 2, 3, 1)), mx.array(t), mx.array(ctx)
        flops = count_flops(ours, mx_x, mx_t, mx_ctx)
        total = sum(flops.values())

        def run_edgegen() -> tuple[float, np.ndarray]:
            start = time.perf_counter()
            out = ours(mx_x, mx_t, mx_ctx)
            mx.eval(out)
            return time.perf_counter() - start, np.array(out)

        def run_diffusers() -> tuple[float, np.ndarray]:
            here.send("run")
            seconds, out = here.recv()
            return seconds, out.transpose(0, 2, 3, 1)

        sides = [("edgegen", run_edgegen)]
        if not args.skip_diffusers:
            here.send((x, t, ctx))
            sides.insert(0, ("diffusers", run_diffusers))
        outputs = {name: fn()[1] for name, fn in sides}  # warm-up (MLX builds its kernels)
        times: dict[str, list[float]] = {name: [] for name, _ in sides}
        for _ in range(max(args.runs, 1)):
            for name, fn in sides:
                times[name].append(fn()[0])
        if not args.skip_diffusers:
            here.send("stop")
            worker.join()

    print(f"SD1.5 UNet, batch 2, {args.size}x{args.size} (latents {side}x{side}), fp32, CPU")
    print(f"edgegen BLAS: {edgegen.BLAS.name} ({edgegen.BLAS.path}); torch threads {torch_threads}")
    print(
        "FLOPs per step (analytic, 2·MAC): "
        + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in flops.most_common())
        + f"; total {total / 1e9:.0f} GFLOP"
    )
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        runs = ", ".join(f"{s:.2f}" for s in ts)
        print(
            f"{name:9s} median {med[name]:6.2f} s/step  ({total / med[name] / 1e9:5.1f} GFLOP/s)"
            f"  runs: {runs}"
        )
    if "diffusers" in med:
        a, b = outputs["edgegen"], outputs["diffusers"]
        err = float(np.abs(a - b).max() / np.abs(b).max())
        print(
            f"ratio edgegen/diffusers {med['edgegen'] / med['diffusers']:.2f} (target <= 0.80); "
            f"output rel. max error {err:.1e}"
        )
    print(f"edgegen MLX peak memory {mx.get_peak_memory() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
