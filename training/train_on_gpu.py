"""Train the default model on one GPU: a VAE, then several UNet variants side by side.

    python training/train_on_gpu.py --work /tmp/edgegen-train --out OUT --deadline 500

A small UNet cannot keep a big GPU busy: each step is a few hundred tiny kernels, so the
GPU waits on Python. Several training processes on the same GPU therefore cost little more
than one, and this driver uses that to train a few variants (size, attention levels, learning
rate) at once instead of guessing one:

1. ``train_default_model.py`` trains the VAE alone (``--unet-steps 0``) and encodes every
   scene once (``latents.pt``);
2. each variant of :data:`VARIANTS` trains its text encoder and UNet on those latents, in
   parallel, for the time left before ``--deadline`` (minus time kept for scoring);
3. each result is scored on the fixed adherence prompts (``training/adherence.py``,
   30 prompts × 2 seeds, 20 DPM-Solver++ steps, guidance 5) with diffusers on the GPU;
4. ``OUT`` receives ``summary.json`` (every variant's score, loss, steps and command), the
   best variant's contact sheet, and the variants as tar files, best first, split into parts
   of at most 15 MiB.

Every command is seeded and recorded; ``training.json`` in each model folder records the
steps run, so the same command with ``--unet-steps N`` in place of ``--time-budget`` repeats
a variant (GPU kernels are not bit-reproducible, so expect close, not identical, weights).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train_default_model.py"

COMMON = ["--images", "30000", "--workers", "16", "--threads", "4"]
VAE = [
    "--vae-channels", "32,64,64,64", "--vae-images", "30000", "--vae-steps", "3000",
    "--vae-batch", "32", "--vae-crop", "128", "--lr-final", "0.05", "--vae-time-budget", "100",
]  # fmt: skip
UNET = [
    "--batch", "256", "--warmup", "200", "--lr-final", "0.05", "--ema-decay", "0.999",
    "--save-every", "2500",
]  # fmt: skip
VARIANTS = {
    # The CPU recipe's architecture, trained far longer.
    "a": ["--unet-channels", "32,64,128", "--unet-attn-levels", "2", "--lr", "8e-4",
          "--cond-lr-mult", "4"],
    # Wider, cross-attention at every level (≈ 19 MB in fp16).
    "b": ["--unet-channels", "48,96,192", "--unet-attn-levels", "3", "--lr", "5e-4",
          "--cond-lr-mult", "2"],
    # Deeper: two resnets + transformers per block, attention everywhere.
    "c": ["--unet-channels", "32,64,128", "--unet-attn-levels", "3", "--unet-layers", "2",
          "--lr", "6e-4", "--cond-lr-mult", "3"],
}  # fmt: skip
TINY = {
    "common": ["--tiny", "--images", "16", "--workers", "2", "--threads", "1"],
    "vae": ["--vae-steps", "2"],
    "unet": ["--save-every", "1000"],
    "variants": {"a": [], "b": ["--unet-attn-levels", "1"]},
}
PART = 15 * 2**20


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), "[driver]", msg, flush=True)


def score(model: Path, device: str) -> dict:
    """Adherence of a diffusers folder on the fixed prompts, with diffusers on ``device``."""
    import adherence  # training/adherence.py, beside this script
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    config = json.loads((model / "training.json").read_text())["config"]
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    cases = [(c, s) for c in adherence.CASES for s in adherence.SEEDS]
    gens = [torch.Generator(device).manual_seed(s) for _, s in cases]
    out = pipe(
        [c.prompt for c, _ in cases],
        height=config["height"],
        width=config["width"],
        num_inference_steps=20,
        guidance_scale=5.0,
        generator=gens,
        output_type="np",
    ).images
    images = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    ok = [
        adherence.agrees(im, c.colour, c.position) for im, (c, _) in zip(images, cases, strict=True)
    ]
    # The same images judged against another prompt's colour and place: the chance level.
    shifted = cases[2:] + cases[:2]
    base = [
        adherence.agrees(im, c.colour, c.position)
        for im, (c, _) in zip(images, shifted, strict=True)
    ]
    return {"agreement": sum(ok) / len(ok), "baseline": sum(base) / len(base), "images": images}


def contact_sheet(images, path: Path) -> None:
    import numpy as np
    from PIL import Image

    rows = [np.concatenate(list(images[i : i + 10]), axis=1) for i in range(0, len(images), 10)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)


def pack(folder: Path, extra: list[Path], dest: Path, name: str) -> list[Path]:
    """``folder`` (and ``extra`` files) as ``name.tar``, split into parts of ≤ 15 MiB."""
    tar_path = folder.parent / f"{name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=name)
        for f in extra:
            if f.exists():
                tar.add(f, arcname=f"{name}/logs/{f.name}")
    data = tar_path.read_bytes()
    parts = []
    for i in range(0, len(data), PART):
        part = dest / f"{name}.tar.{i // PART:02d}"
        part.write_bytes(data[i : i + PART])
        parts.append(part)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--deadline", type=float, default=500, help="seconds for the whole run")
    ap.add_argument("--score-reserve", type=float, default=110, help="seconds kept for scoring")
    ap.add_argument("--tiny", action="store_true", help="a smoke run of the whole driver")
    args = ap.parse_args(argv)
    t0 = time.time()
    work, out = args.work, args.out
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    common = TINY["common"] if args.tiny else COMMON
    vae_args = TINY["vae"] if args.tiny else VAE
    unet_args = TINY["unet"] if args.tiny else UNET
    variants = TINY["variants"] if args.tiny else VARIANTS
    py = [sys.executable, str(TRAIN), "--device", args.device]

    vae_cmd = py + common + vae_args
    vae_cmd += ["--unet-steps", "0", "--work", str(work / "vae"), "--out", str(work / "vae_model")]
    log("VAE: " + " ".join(vae_cmd))
    subprocess.run(vae_cmd, check=True)
    log(f"VAE done at {time.time() - t0:.0f} s")

    budget = args.deadline - (time.time() - t0) - args.score_reserve
    procs, commands = {}, {}
    for name, extra in variants.items():
        cmd = py + common + unet_args + extra
        cmd += ["--vae", str(work / "vae_model"), "--latents", str(work / "vae" / "latents.pt")]
        cmd += ["--time-budget", f"{budget - 25:.0f}"]  # start-up: imports, latents, models
        cmd += ["--work", str(work / f"run_{name}"), "--out", str(work / f"model_{name}")]
        commands[name] = cmd
        log(f"variant {name}: " + " ".join(cmd))
        logf = (work / f"variant_{name}.log").open("w")
        procs[name] = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    codes = {name: p.wait() for name, p in procs.items()}
    log(f"variants done at {time.time() - t0:.0f} s: exit codes {codes}")
    for name in variants:
        tail = (work / f"variant_{name}.log").read_text().splitlines()[-4:]
        log(f"variant {name} log tail: " + " | ".join(tail))

    results = {}
    for name in variants:
        model = work / f"model_{name}"
        if not (model / "unet").is_dir():
            results[name] = {"error": "no model saved", "exit": codes[name]}
            continue
        try:
            s = score(model, args.device)
        except Exception as exc:
            results[name] = {"error": repr(exc), "exit": codes[name]}
            continue
        meta = json.loads((model / "training.json").read_text())
        images = s.pop("images")
        results[name] = {**s, "exit": codes[name], "command": commands[name], "training": meta}
        results[name]["_images"] = images
        log(f"variant {name}: agreement {s['agreement']:.0%} (baseline {s['baseline']:.0%}), "
            f"steps {meta['steps']}, loss {meta['final_loss_ema100']}")  # fmt: skip

    ranked = sorted(
        (n for n in results if "agreement" in results[n]),
        key=lambda n: -results[n]["agreement"],
    )
    if ranked:
        contact_sheet(results[ranked[0]]["_images"], out / f"contact_{ranked[0]}.png")
    for r in results.values():
        r.pop("_images", None)
    summary = {"ranked": ranked, "variants": results, "vae_command": vae_cmd}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    files, size = 3, 0  # log, summary, contact sheet
    for name in ranked:
        model = work / f"model_{name}"
        logs = [work / f"run_{name}" / "loss.csv", work / "vae" / "vae_loss.csv",
                work / f"variant_{name}.log"]  # fmt: skip
        files_in = [f for f in model.rglob("*") if f.is_file()] + [f for f in logs if f.exists()]
        need = sum(f.stat().st_size for f in files_in) + 10240 * len(files_in)
        if files + -(-need // PART) > 8 or size + need > 58 * 2**20:
            log(f"variant {name} not packed: the output limit")
            continue
        parts = pack(model, logs, out, name)
        files, size = files + len(parts), size + sum(p.stat().st_size for p in parts)
        log(f"packed {name}: {[p.name for p in parts]}")
    log(f"all done in {time.time() - t0:.0f} s")
    return 0 if ranked else 1


if __name__ == "__main__":
    sys.exit(main())
