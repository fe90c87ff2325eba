"""Contact sheet of the default model on the fixed adherence prompts, and its loss plot.

    .venv/bin/python training/contact_sheet.py            # docs/default-model/contact_sheet.png
    .venv/bin/python training/contact_sheet.py --loss training/run/loss.csv

Runs the shipped model (or ``--model PATH``) through edgegen's MLX pipeline on the 30 prompts ×
2 seeds of ``training/adherence.py``, marks each tile with whether the image statistics
agree with the prompt, and prints the agreement rate.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import edgegen  # noqa: F401  (BLAS before mlx)
from edgegen.fileio import atomic_write_bytes

OUT = Path("docs/default-model")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def contact_sheet(model: Path | None, out: Path, steps: int, guidance: float) -> float:
    import adherence  # training/adherence.py, beside this script

    from edgegen.defaultmodel import path
    from edgegen.pipelines import load_pipeline

    sd = load_pipeline(model or path())
    t0 = time.time()
    results = adherence.evaluate(sd, steps=steps, guidance=guidance)
    seconds = time.time() - t0
    h, w = results[0][3].shape[:2]
    label_h, cols = 44, 10
    rows = -(-len(results) // cols)
    sheet = Image.new("RGB", (cols * w, rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (case, seed, ok, image) in enumerate(results):
        x, y = (i % cols) * w, (i // cols) * (h + label_h)
        sheet.paste(Image.fromarray(image), (x, y))
        words = f"{'OK' if ok else 'NO'} s{seed} {case.colour} {case.obj} {case.position}"
        draw.text((x + 3, y + h + 2), words, fill=(0, 110, 0) if ok else (190, 0, 0), font=font)
        draw.text((x + 3, y + h + 16), case.setting[:24], fill=(60, 60, 60), font=font)
        draw.text((x + 3, y + h + 28), case.setting[24:48], fill=(60, 60, 60), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, _png(sheet))
    rate = sum(r[2] for r in results) / len(results)
    print(f"{out}: {len(results)} images in {seconds:.1f} s, agreement {rate:.0%}")
    return rate


def loss_plot(csv_path: Path, out: Path, title: str) -> None:
    """Raw loss (grey) and its 50-step moving average (blue), log-free, with Pillow only."""
    rows = list(csv.DictReader(csv_path.open()))
    loss = [float(r["loss"]) for r in rows]
    avg, acc = [], []
    for v in loss:
        acc.append(v)
        acc = acc[-50:]
        avg.append(sum(acc) / len(acc))
    W, H, pad = 640, 360, 44
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    top = max(avg[min(len(avg) - 1, 20) :] or avg) * 1.3
    bottom = 0.0

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (W - 2 * pad) * i / max(1, len(loss) - 1)
        y = H - pad - (H - 2 * pad) * (min(v, top) - bottom) / (top - bottom)
        return x, y

    d.rectangle([pad, pad, W - pad, H - pad], outline=(0, 0, 0))
    d.line([xy(i, v) for i, v in enumerate(loss)], fill=(200, 200, 200))
    d.line([xy(i, v) for i, v in enumerate(avg)], fill=(30, 80, 200), width=2)
    font = ImageFont.load_default()
    d.text(
        (pad, 12),
        f"{title}: final 50-step mean {avg[-1]:.4f} after {len(loss)} steps",
        fill=(0, 0, 0),
        font=font,
    )
    d.text((pad, H - pad + 6), "step 0", fill=(0, 0, 0), font=font)
    d.text((W - pad - 60, H - pad + 6), f"step {len(loss) - 1}", fill=(0, 0, 0), font=font)
    d.text((4, pad), f"{top:.3f}", fill=(0, 0, 0), font=font)
    d.text((4, H - pad - 10), "0", fill=(0, 0, 0), font=font)
    atomic_write_bytes(out, _png(img))
    print(f"{out}: {len(loss)} steps, final mean {avg[-1]:.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="diffusers folder (default: shipped)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--loss", type=Path, default=None, help="a loss.csv: plot it instead")
    args = ap.parse_args(argv)
    if args.loss:
        loss_plot(args.loss, args.out / "unet_loss.png", "UNet + text encoder loss")
        vae_csv = args.loss.with_name("vae_loss.csv")
        if vae_csv.is_file():
            loss_plot(vae_csv, args.out / "vae_loss.png", "VAE loss")
        return 0
    contact_sheet(args.model, args.out / "contact_sheet.png", args.steps, args.guidance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
