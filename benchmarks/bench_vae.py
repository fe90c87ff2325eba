"""Time an SD 1.5-size VAE decode in edgegen/MLX and in diffusers/PyTorch, same weights, one run.

    .venv/bin/python benchmarks/bench_vae.py [--size 512] [--repeats 2] [--tiled]

Random weights (timing does not depend on them). Prints both times, the ratio (MLX / PyTorch,
below 1 means edgegen is faster), the achieved GFLOP/s and the largest difference between the
two decodes, so a fast but wrong result cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import time

import edgegen  # noqa: F401  (optimized BLAS before mlx: mlx is imported below, in main)

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


def count_decode_flops(model, z) -> float:  # noqa: ANN001 (diffusers model, torch tensor)
    """Multiply-adds ×2 of the convolutions, linears and attention matmuls of one decode."""
    import torch

    flops = 0.0

    def conv(m, _inp, out):  # noqa: ANN001
        nonlocal flops
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
        flops += 2.0 * out.numel() * k

    def linear(m, inp, _out):  # noqa: ANN001
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


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up: compiles MLX kernels, warms PyTorch's allocator
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


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
        f"{torch.get_num_threads()}, BLAS {edgegen.BLAS.name}"
    )

    out_mx = None

    def run_mlx() -> None:
        nonlocal out_mx
        out_mx = ours.decode(z_mx)
        mx.eval(out_mx)

    t_mlx = timed(run_mlx, args.repeats)
    print(f"edgegen/MLX      {t_mlx:8.2f} s")
    if args.tiled:
        t_tiled = timed(lambda: mx.eval(ours.decode_tiled(z_mx, 64, 16)), args.repeats)
        print(f"edgegen tiled    {t_tiled:8.2f} s  (tile 64, overlap 16 latents)")
    if args.skip_torch:
        return

    out_pt = None

    def run_torch() -> None:
        nonlocal out_pt
        with torch.no_grad():
            out_pt = ref.decode(z).sample

    t_pt = timed(run_torch, args.repeats)
    flops = count_decode_flops(ref, z)
    want = out_pt.numpy().transpose(0, 2, 3, 1)
    err = np.abs(np.array(out_mx) - want).max() / np.abs(want).max()
    print(f"diffusers/torch  {t_pt:8.2f} s")
    print(f"ratio MLX/torch  {t_mlx / t_pt:8.2f}")
    print(
        f"GFLOP/s          MLX {flops / t_mlx / 1e9:.1f}, torch {flops / t_pt / 1e9:.1f} "
        f"({flops / 1e9:.0f} GFLOP per decode)"
    )
    print(f"max rel. diff    {err:.2e}")


if __name__ == "__main__":
    main()
