"""Second training stage of the default model: fine-tune the VAE decoder on frozen latents.

    .venv/bin/python training/finetune_decoder.py --model edgegen/defaultmodel/weights

The UNet only ever sees the VAE *encoder's* latents, so once they are fixed the decoder can keep
learning on its own without touching anything the UNet learned. The short first VAE stage of
``train_default_model.py`` leaves a decoder whose colours are still off; this stage trains the
decoder (and ``post_quant_conv``) alone on full 128×256 images, seeded, and writes it back into
the diffusers folder in place (atomically), keeping the encoder and the scaling factor.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads starve on a shared CPU

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scenes import render, scene_for

import edgegen  # noqa: F401


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def saturated(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask of the pixels of ``x`` (NCHW in [-1, 1]) that are a saturated, not
    dark colour: the thresholds of ``training/adherence.py``."""
    rgb = (x + 1) / 2
    mx, mn = rgb.max(dim=1, keepdim=True).values, rgb.min(dim=1, keepdim=True).values
    sat = (mx - mn) / mx.clamp_min(1e-6)
    return ((sat >= 0.4) & (mx >= 0.3)).float()


def finetune(
    model: Path,
    work: Path,
    steps: int = 600,
    images: int = 1500,
    batch: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 2,
    deadline: float | None = None,
    colour_weight: float = 0.0,
) -> dict:
    """Train ``model/vae``'s decoder for ``steps`` (or until ``deadline``, a time.time()).

    ``colour_weight``: pixels of saturated colour (the drawn objects: a few percent of each
    picture) weigh ``1 + colour_weight`` in the loss. With plain L1 the sky and land dominate
    and the decoder settles on a muddy average of the object hues (red and yellow come out
    orange), which is exactly what the prompts name."""
    from diffusers import AutoencoderKL

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(model / "vae", torch_dtype=torch.float32)
    from safetensors import safe_open

    with safe_open(str(model / "vae" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        stored = f.get_tensor(next(iter(f.keys()))).dtype  # save back in the shipped precision
    with open(model / "vae" / "config.json") as f:
        h = int(json.load(f)["sample_size"])
    w = h // 2
    pixels = np.stack([np.asarray(render(scene_for(i, seed), (w, h))) for i in range(images)])
    x_all = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        z_all = torch.cat(
            [vae.encode(x_all[i : i + 32]).latent_dist.mean for i in range(0, images, 32)]
        )
    log(f"encoded {images} images")
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    vae.decoder.train()
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 5)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = 0
    with open(work / "decoder_loss.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["step", "loss", "l1", "seconds"])
        for step in range(steps):
            if deadline is not None and time.time() > deadline:
                break
            for g in opt.param_groups:  # cosine decay: the last steps polish
                g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
            idx = rng.integers(0, images, batch)
            x, z = x_all[idx], z_all[idx]
            rec = vae.decode(z).sample
            l1 = (rec - x).abs().mean()
            weight = 1.0 + colour_weight * saturated(x)
            err = (rec - x).abs() + 0.5 * (rec - x) ** 2
            loss = (weight * err).mean() / weight.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            done = step + 1
            wr.writerow([step, f"{loss.item():.5f}", f"{l1.item():.5f}", f"{time.time() - t0:.1f}"])
            if step % 20 == 0:
                f.flush()
                log(f"decoder step {step} loss {loss.item():.4f} l1 {l1.item():.4f}")
    vae.eval()
    tmp = model / "vae.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.to(stored).save_pretrained(tmp, safe_serialization=True)
    old = model / "vae.old"
    shutil.rmtree(old, ignore_errors=True)
    (model / "vae").rename(old)
    tmp.rename(model / "vae")
    shutil.rmtree(old)
    return {"decoder_steps": done, "decoder_seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("training/run"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--colour-weight", type=float, default=0.0, help="see finetune()")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long")
    args = ap.parse_args(argv)
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    summary = finetune(
        args.model,
        args.work,
        args.steps,
        args.images,
        batch=args.batch,
        lr=args.lr,
        deadline=deadline,
        colour_weight=args.colour_weight,
    )
    log(f"done: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
