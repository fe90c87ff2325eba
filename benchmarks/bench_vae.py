"""Time an SD 1.5-size VAE decode in edgegen/MLX and in diffusers/PyTorch, same weights, one run.

    .venv/bin/python benchmarks/bench_vae.py [--size 512] [--repeats 2] [--tiled]

Process settings matter a lot on Linux (both measured on the 2-core dev machine): glibc
returns every large freed buffer to the OS, so each new MLX array page-faults its memory in
again (``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824`` stops that), and
OpenBLAS 0.3.21 does not know AMD Zen 5 and falls back to AVX2 kernels
(``OPENBLAS_CORETYPE=SkylakeX`` selects its AVX-512 ones). The header line shows what is active.

Random weights (timing does not depend on them). Prints both times, the ratio (MLX / PyTorch,
below 1 means edgegen is faster), the achieved GFLOP/s and the largest difference between the
two decodes, so a fast but wrong result cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import os
import time

import edgegen

SD15 = {
    "_class_name": "AutoencoderKL",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}


def count_decode_flops(model, z) -> float:
    """Multiply-adds ×2 of the convolutions, linears and attention matmuls of one decode."""
    import torch

    flops = 0.0

    def conv(m, _inp, out):
        nonlocal flops
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
        flops += 2.0 * out.numel() * k

    def linear(m, inp, _out):
        nonlocal flops
        flops += 2.0 * inp[0].numel() * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    with torch.no_grad():
        model.decode(z)
    for h in hooks:
        h.remove()
    # Mid-block attention: scores (N×N×C) and weighted sum (N×N×C), one head.
    c = SD15["block_out_channels"][-1]
    n = z.shape[2] * z.shape[3]
    return flops + 2 * 2.0 * n * n * c


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Best time of each function, run round-robin after one warm-up each: on a shared machine
    the load drifts, and alternating keeps it from favouring whichever side runs first."""
    for fn in fns.values():
        fn()  # warm-up: compiles MLX kernels and caches kernel layouts, warms allocators
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def blas_core() -> str:
    """OpenBLAS's kernel family (OPENBLAS_CORETYPE chooses it), or the BLAS name."""
    import ctypes

    if edgegen.BLAS.name != "openblas" or not edgegen.BLAS.path:
        return edgegen.BLAS.name
    lib = ctypes.CDLL(edgegen.BLAS.path)
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return f"openblas ({lib.openblas_get_corename().decode()} kernels)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up")
    ap.add_argument("--tiled", action="store_true", help="also time decode_tiled (64/16)")
    ap.add_argument("--skip-torch", action="store_true", help="time MLX only")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np
    import torch
    from diffusers import AutoencoderKL as TorchVAE

    from edgegen.converters.mapping import load_into, map_weights, parameter_shapes
    from edgegen.converters.rules_vae import RULES
    from edgegen.models.vae import AutoencoderKL, VAEConfig

    torch.manual_seed(0)
    ref = TorchVAE(**{k: v for k, v in SD15.items() if k != "_class_name"}).eval()
    source = {k: mx.array(v.numpy()) for k, v in ref.state_dict().items()}
    ours = AutoencoderKL(VAEConfig.from_dict(SD15))
    load_into(ours, map_weights(source, RULES, parameter_shapes(ours), "vae"))
    mx.eval(ours.parameters())

    side = args.size // 8
    z = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(0))
    z_mx = mx.array(z.numpy().transpose(0, 2, 3, 1))
    print(
        f"VAE decode {args.size}x{args.size} (latents {side}x{side}), torch threads "
        f"{torch.get_num_threads()}, MLX BLAS {blas_core()}, "
        f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}"
    )
    outs = {}

    def run_mlx() -> None:
        outs["mlx"] = ours.decode(z_mx)
        mx.eval(outs["mlx"])

    def run_tiled() -> None:
        mx.eval(ours.decode_tiled(z_mx, 64, 16))

    def run_torch() -> None:
        with torch.no_grad():
            outs["torch"] = ref.decode(z).sample

    fns = {"edgegen/MLX": run_mlx}
    if args.tiled:
        fns["edgegen tiled"] = run_tiled
    if not args.skip_torch:
        fns["diffusers/torch"] = run_torch
    best = interleaved(fns, args.repeats)
    for name, t in best.items():
        print(f"{name:16s} {t:8.2f} s")
    if args.skip_torch:
        return
    t_mlx, t_pt = best["edgegen/MLX"], best["diffusers/torch"]
    flops = count_decode_flops(ref, z)
    want = outs["torch"].numpy().transpose(0, 2, 3, 1)
    err = np.abs(np.array(outs["mlx"]) - want).max() / np.abs(want).max()
    print(f"ratio MLX/torch  {t_mlx / t_pt:8.2f}")
    print(
        f"GFLOP/s          MLX {flops / t_mlx / 1e9:.1f}, torch {flops / t_pt / 1e9:.1f} "
        f"({flops / 1e9:.0f} GFLOP per decode)"
    )
    print(f"max rel. diff    {err:.2e}")


if __name__ == "__main__":
    main()
