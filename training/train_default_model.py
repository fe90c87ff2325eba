"""Train edgegen's default model: a small Stable Diffusion (CLIP text encoder, UNet, VAE).

Run from the repository root:

    .venv/bin/python training/train_default_model.py --out edgegen/defaultmodel/weights

The defaults are the CPU recipe (about 90 minutes on a shared 2-core CPU). ``--device cuda``
trains on a GPU (bf16 autocast); ``training/train_on_gpu.py`` is the driver that trained the
shipped model there: one VAE, then several UNet variants side by side, each scored on the
adherence prompts, the best kept. ``--time-budget`` picks the number of UNet steps from the
measured speed, and ``training.json`` records the steps actually run, so ``--unet-steps N``
repeats a run.

Everything is generated here and seeded, so the same command gives the same model:

1. render the captioned scenes of ``training/scenes.py`` at 128×256;
2. train the AutoencoderKL (8× down, 4 latent channels) on random crops of the first images;
3. encode every image once to latents (posterior means) and set the VAE's scaling factor so
   that the latents have unit variance, as SD's 0.18215 does;
4. train the UNet and the CLIP text encoder together on those latents (epsilon prediction,
   DDPM scaled-linear betas, min-SNR loss weights, 10% empty captions for classifier-free
   guidance, offset noise so that whole-image colour can move, horizontal flips that swap
   left and right in the caption too), keeping an EMA of the weights;
5. save the EMA weights in diffusers layout (fp16 safetensors) every ``save_every`` steps and at
   the end, plus ``loss.csv`` files and a loss plot.

The tokenizer is a reduced CLIP BPE vocabulary (see ``edgegen/defaultmodel/vocab.py``). Captions
are tokenized with edgegen's own tokenizer reading the saved files, so training sees exactly
the ids the MLX pipeline will feed the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads starve on a shared CPU

import argparse
import contextlib
import copy
import csv
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scenes import Scene, caption, caption_words, render, scene_for

import edgegen  # noqa: F401  (BLAS before any mlx import)
from edgegen.converters.tokenizer import CLIPTokenizer
from edgegen.defaultmodel.vocab import write_reduced_tokenizer

CLIP_INIT_STD = 0.02  # transformers' CLIPTextConfig.initializer_range


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    width: int = 128  # edgegen sizes are multiples of 64; 128×256 is the nearest to 9:16
    height: int = 256
    images: int = 6000  # distinct scenes (×2 with flips)
    # VAE
    vae_channels: tuple[int, ...] = (16, 32, 64, 64)  # 4 levels: 8× down
    # Few groups: with one channel per group GroupNorm removes each channel's mean, and a
    # flat colour field (most of these pictures) then carries no colour at all.
    vae_groups: int = 4
    vae_images: int = 768  # the first images of the set, cropped at random
    vae_crop: int = 96
    vae_batch: int = 16
    vae_steps: int = 400
    vae_lr: float = 1e-3
    vae_kl: float = 1e-6  # KL weight per summed pixel loss, as in SD's autoencoder
    # Text encoder (CLIP architecture, quick_gelu like SD 1.x)
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 4
    text_ff: int = 512
    # UNet
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_groups: int = 8  # ≥ 4 channels per group, for the same reason as the VAE's
    unet_heads: int = 8
    unet_layers: int = 1  # resnets (and transformers) per block
    unet_attn_levels: int = 2  # cross-attention in this many of the lowest-resolution levels
    unet_steps: int = 1400
    batch: int = 64
    lr: float = 8e-4
    warmup: int = 100
    lr_final: float = 1.0  # cosine decay to this fraction of lr over the run (1.0: constant)
    caption_dropout: float = 0.1  # empty prompt: the unconditional branch of CFG
    offset_noise: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.998
    save_every: int = 200
    threads: int = 2
    workers: int = 1  # processes that render the scenes
    save_fp16: bool = True  # ship in half precision: ≈ half the package size
    token_init_std: float = 1.0  # see build()
    # Prompt length in tokens (SD uses 77). Cross-attention at first averages over every
    # position; with 77 positions of which ~60 are identical padding, the prompt's words are
    # diluted fivefold and the UNet learned nothing from them in 400 steps. The longest
    # caption is 25 tokens with <start>/<end>.
    context_length: int = 32
    cond_lr_mult: float = 4.0  # text encoder and cross-attention learn this much faster


def tiny_config() -> TrainConfig:
    """A few-second configuration for tests."""
    return replace(
        TrainConfig(),
        images=8,
        vae_channels=(8, 8),
        vae_groups=4,
        vae_images=8,
        vae_crop=32,
        vae_batch=2,
        vae_steps=2,
        text_hidden=32,
        text_layers=1,
        text_ff=64,
        unet_channels=(16, 32),
        unet_groups=8,
        unet_heads=2,
        unet_steps=3,
        batch=4,
        warmup=1,
        save_every=2,
        width=64,
        height=64,
    )


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def flipped(scene: Scene) -> Scene:
    """The same scene mirrored left-right: its caption swaps left and right."""
    col, row = scene.cell
    return replace(scene, cell=(2 - col, row))


def _render_one(args: tuple[Scene, tuple[int, int]]) -> np.ndarray:
    scene, size = args
    return np.asarray(render(scene, size))


def render_set(cfg: TrainConfig) -> tuple[list[Scene], np.ndarray]:
    scenes = [scene_for(i, cfg.seed) for i in range(cfg.images)]
    jobs = [(s, (cfg.width, cfg.height)) for s in scenes]
    if cfg.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(cfg.workers) as pool:
            images = pool.map(_render_one, jobs, chunksize=64)
    else:
        images = [_render_one(j) for j in jobs]
    return scenes, np.stack(images)  # (N, H, W, 3) uint8; identical for any worker count


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def build(cfg: TrainConfig, tokenizer: CLIPTokenizer, vocab_size: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg.seed)
    n = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=cfg.vae_groups,
        sample_size=cfg.height,
    )
    m = len(cfg.unet_channels)
    plain = m - cfg.unet_attn_levels  # highest-resolution levels without cross-attention
    unet = UNet2DConditionModel(
        # sample_size × VAE scale is the "native" side edgegen derives its default size from:
        # 16 × 8 = 128 → a 128×256 portrait.
        sample_size=cfg.width // 2 ** (n - 1),
        in_channels=4,
        out_channels=4,
        layers_per_block=cfg.unet_layers,
        block_out_channels=cfg.unet_channels,
        down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * (m - plain),
        up_block_types=("CrossAttnUpBlock2D",) * (m - plain) + ("UpBlock2D",) * plain,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=cfg.unet_heads,
        norm_num_groups=cfg.unet_groups,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_ff,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=tokenizer.model_max_length,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id,
            pad_token_id=tokenizer.pad_id,
        )
    )
    # CLIP initialises token embeddings with std 0.02, which a pretrained CLIP has long left
    # behind. From scratch, such embeddings make every prompt's final-layer-norm output nearly
    # the same, and the UNet learns to ignore its context (measured: after 300 steps the
    # noise error with the right, an empty and a wrong caption agreed to 4 decimals). Large
    # token embeddings make each token distinct from step 0, so cross-attention can use them.
    if cfg.token_init_std != CLIP_INIT_STD:  # CLIP's own init otherwise (stage 1 used it)
        torch.manual_seed(cfg.seed + 6)
        text.get_input_embeddings().weight.data.normal_(0.0, cfg.token_init_std)
    return vae, unet, text


def scheduler():
    from diffusers import DPMSolverMultistepScheduler

    # SD 1.x's training schedule; DPM-Solver++(2M) is the sampler edgegen picks for it.
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
    )


def _autocast(device: torch.device):
    """bf16 autocast on a GPU (Hopper/Ampere tensor cores); plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_factor(step: int, total: int, warmup: int, final: float) -> float:
    """Linear warm-up, then cosine decay from 1 to ``final`` at ``total`` (constant if 1)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_vae(
    cfg: TrainConfig,
    vae,
    pixels: np.ndarray,
    out: Path,
    device: torch.device,
    time_budget: float | None = None,
) -> int:
    """Train the autoencoder; returns the number of steps run (``time_budget`` in seconds
    caps it, judged from the speed of the first 100 steps)."""
    rng = np.random.default_rng(cfg.seed + 1)
    total = cfg.vae_steps
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    data = pixels[: cfg.vae_images]
    c = min(cfg.vae_crop, cfg.width, cfg.height)
    t0 = time.time()
    with open(out / "vae_loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "l1", "seconds"])
        step = 0
        while step < total:
            if time_budget is not None and step == 100:
                rate = (time.time() - t0) / step
                total = min(total, max(step, int(time_budget / rate)))
                log(f"vae: {rate * 1000:.1f} ms/step, {total} steps fit in {time_budget:.0f} s")
            for g in opt.param_groups:
                g["lr"] = cfg.vae_lr * lr_factor(step, total, 20, cfg.lr_final)
            idx = rng.integers(0, len(data), cfg.vae_batch)
            ys = rng.integers(0, cfg.height - c + 1, cfg.vae_batch)
            xs = rng.integers(0, cfg.width - c + 1, cfg.vae_batch)
            crops = np.stack(
                [data[i, y : y + c, x : x + c] for i, y, x in zip(idx, ys, xs, strict=True)]
            )
            x = to_tensor(crops).to(device)
            with _autocast(device):
                post = vae.encode(x).latent_dist
                # The posterior mean, not a sample: with SD's tiny KL weight the encoder's
                # variance starts at 1 and only slowly shrinks, drowning the small early means
                # in noise; a short run learns far faster as a plain autoencoder (the UNet
                # sees means too).
                z = post.mean
                rec = vae.decode(z).sample.float()
            l1 = (rec - x).abs().mean()
            kl = post.kl().float().mean() / x[0].numel()
            loss = l1 + 0.5 * F.mse_loss(rec, x) + cfg.vae_kl * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            lv, l1v = loss.item(), l1.item()
            w.writerow([step, f"{lv:.5f}", f"{l1v:.5f}", f"{time.time() - t0:.1f}"])
            if step % 100 == 0 or step == total - 1:
                f.flush()
                log(f"vae step {step} loss {lv:.4f} l1 {l1v:.4f}")
            step += 1
    return total


@torch.no_grad()
def encode_set(vae, pixels: np.ndarray, device: torch.device, batch: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(pixels), batch):
        x = to_tensor(pixels[i : i + batch]).to(device)
        out.append(vae.encode(x).latent_dist.mean.float().cpu())
        if i % (batch * 50) == 0:
            log(f"encoded {i}/{len(pixels)}")
    return torch.cat(out)


class EMA:
    def __init__(self, modules: list[torch.nn.Module], decay: float):
        self.decay = decay
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in modules]
        self.modules = modules

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for shadow, live in zip(self.shadow, self.modules, strict=True):
            torch._foreach_lerp_(list(shadow.parameters()), list(live.parameters()), 1 - d)


def save(out: Path, cfg: TrainConfig, vae, unet, text, tok_dir: Path, meta: dict) -> None:
    """Write the diffusers folder atomically (a temporary sibling, then a rename)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer as HFTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_tok = HFTokenizer(
        vocab_file=str(tok_dir / "vocab.json"),
        merges_file=str(tok_dir / "merges.txt"),
        pad_token="<|endoftext|>",
        model_max_length=cfg.context_length,
    )
    dtype = torch.float16 if cfg.save_fp16 else torch.float32
    parts = [copy.deepcopy(m).to("cpu", dtype) for m in (vae, unet, text)]
    pipe = StableDiffusionPipeline(
        vae=parts[0],
        unet=parts[1],
        text_encoder=parts[2],
        tokenizer=hf_tok,
        scheduler=scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp, safe_serialization=True)
    # One source of truth for the vocabulary: SD 1.5's file set (vocab.json + merges.txt).
    shutil.rmtree(tmp / "tokenizer")
    shutil.copytree(tok_dir, tmp / "tokenizer")
    (tmp / "training.json").write_text(json.dumps({**meta, "config": asdict(cfg)}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _vae_folder(path: Path) -> Path:
    return path / "vae" if (path / "vae").is_dir() else path


def train(
    cfg: TrainConfig,
    out: Path,
    work: Path,
    resume: Path | None = None,
    resume_text: bool = False,
    *,
    device: str = "cpu",
    vae_from: Path | None = None,
    latents_from: Path | None = None,
    time_budget: float | None = None,
    vae_time_budget: float | None = None,
) -> dict:
    """Run all phases; returns a summary. ``out`` receives the diffusers folder, ``work`` the
    loss logs and intermediate files (``latents.pt`` among them). ``resume``: a folder this
    script saved; its VAE (and scaling factor) and UNet are kept and training continues with a
    fresh text encoder, or with the saved one too when ``resume_text``. ``vae_from``: take a
    trained VAE from a folder (skips the VAE phase); ``latents_from``: that VAE's
    ``latents.pt`` (skips rendering and encoding). ``time_budget``: seconds of UNet training;
    the number of steps is then chosen from the speed of the first 100 steps (and
    ``vae_time_budget`` caps the VAE's steps the same way)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    dev = torch.device(device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tok_dir = work / "tokenizer"
    vocab_size = write_reduced_tokenizer(tok_dir, caption_words(), cfg.context_length)
    tokenizer = CLIPTokenizer.from_dir(tok_dir)
    vae, unet, text = build(cfg, tokenizer, vocab_size)
    sizes = {
        k: sum(p.numel() for p in m.parameters())
        for k, m in (("vae", vae), ("unet", unet), ("text_encoder", text))
    }
    log(f"vocab {vocab_size} tokens; parameters {sizes}; device {dev}")

    scenes = [scene_for(i, cfg.seed) for i in range(cfg.images)]
    pixels = None
    if latents_from is None:
        scenes, pixels = render_set(cfg)
        log(f"rendered {len(scenes)} scenes at {cfg.width}×{cfg.height}")
    if resume is not None:
        vae = AutoencoderKL.from_pretrained(_vae_folder(resume), torch_dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(resume / "unet", torch_dtype=torch.float32)
        if resume_text:
            from transformers import CLIPTextModel

            text = CLIPTextModel.from_pretrained(resume / "text_encoder", dtype=torch.float32)
        log(f"resumed VAE, UNet{' and text encoder' if resume_text else ''} from {resume}")
    elif vae_from is not None:
        vae = AutoencoderKL.from_pretrained(_vae_folder(vae_from), torch_dtype=torch.float32)
        log(f"VAE from {vae_from}")
    vae, unet, text = vae.to(dev), unet.to(dev), text.to(dev)
    sizes = {  # again: a resumed or borrowed model may differ from ``cfg``
        k: sum(p.numel() for p in m.parameters())
        for k, m in (("vae", vae), ("unet", unet), ("text_encoder", text))
    }
    if resume is None and vae_from is None:
        vae.train()
        cfg = replace(cfg, vae_steps=train_vae(cfg, vae, pixels, work, dev, vae_time_budget))
    vae.eval().requires_grad_(False)
    vae_seconds = time.time() - started

    if latents_from is not None:
        latents = torch.load(latents_from)
        if latents.shape[0] != cfg.images:
            raise SystemExit(f"{latents_from} holds {latents.shape[0]} latents, not {cfg.images}")
    else:
        latents = encode_set(vae, pixels, dev, batch=256 if dev.type == "cuda" else 32)
        torch.save(latents, work / "latents.pt")
    del pixels
    if resume is None and vae_from is None:
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    scale = float(vae.config.scaling_factor)
    latents = (latents * scale).to(dev)
    log(f"latents {tuple(latents.shape)}, scaling factor {scale:.5f}")

    sched = scheduler()
    alphas = sched.alphas_cumprod.float().to(dev)
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-γ for epsilon targets
    params = list(unet.parameters()) + list(text.parameters())
    cond = [p for n, p in unet.named_parameters() if ".attn2." in n] + list(text.parameters())
    cond_ids = {id(p) for p in cond}
    groups = [
        {"params": [p for p in unet.parameters() if id(p) not in cond_ids], "mult": 1.0},
        {"params": cond, "mult": cfg.cond_lr_mult},
    ]
    extra = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.01, **extra)
    ema = EMA([unet, text], cfg.ema_decay)
    rng = np.random.default_rng(cfg.seed + 3)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed + 4)
    unet.train()
    text.train()
    total = cfg.unet_steps
    probe = 100
    t0 = time.time()
    meta: dict = {}
    pending: list[tuple[int, torch.Tensor, float]] = []

    def snapshot(done: int, f) -> None:
        nonlocal meta
        meta = {
            "steps": done,
            "final_loss_ema100": _tail_mean(work / "loss.csv", f),
            "unet_seconds": round(time.time() - t0, 1),
            "vae_seconds": round(vae_seconds, 1),
            "total_seconds": round(time.time() - started, 1),
            "parameters": sizes,
            "vocab_size": vocab_size,
            "scaling_factor": scale,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "vae_from": str(vae_from) if vae_from else None,
        }
        save(out, replace(cfg, unet_steps=total), vae, ema.shadow[0], ema.shadow[1], tok_dir, meta)
        log(f"saved {out} at step {done}")

    with open(work / "loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "seconds"])

        def flush() -> list[float]:
            """Write the pending losses; returns them. One device→host copy per flush, not
            one per step: the GPU stays ahead."""
            if not pending:
                return []
            values = torch.stack([v for _, v, _ in pending]).float().cpu().tolist()
            for (s, _, lr_s), v in zip(pending, values, strict=True):
                w.writerow([s, f"{v:.5f}", f"{lr_s:.6f}", f"{time.time() - t0:.1f}"])
            pending.clear()
            f.flush()
            return values

        step = 0
        while step < total:
            if time_budget is not None and step == probe:
                rate = (time.time() - t0) / probe
                total = max(probe, probe + int((time_budget - (time.time() - t0)) / rate))
                log(f"{rate * 1000:.1f} ms/step: {total} steps fit in {time_budget:.0f} s")
            lr = cfg.lr * lr_factor(step, total, cfg.warmup, cfg.lr_final)
            for g in opt.param_groups:
                g["lr"] = lr * g["mult"]
            idx = rng.integers(0, len(scenes), cfg.batch)
            flip = rng.random(cfg.batch) < 0.5
            crng = random.Random(int(rng.integers(2**62)))
            prompts = [
                ""
                if crng.random() < cfg.caption_dropout
                else caption(flipped(scenes[i]) if fl else scenes[i], crng)
                for i, fl in zip(idx, flip, strict=True)
            ]
            ids = torch.from_numpy(tokenizer.encode(prompts).ids.astype(np.int64)).to(dev)
            x0 = latents[torch.from_numpy(idx).to(dev)]
            fl = torch.from_numpy(flip).to(dev).view(-1, 1, 1, 1)
            x0 = torch.where(fl, x0.flip(-1), x0)
            noise = torch.randn(x0.shape, generator=gen, device=dev)
            offset = torch.randn((x0.shape[0], x0.shape[1], 1, 1), generator=gen, device=dev)
            noise = noise + cfg.offset_noise * offset
            t = torch.randint(0, len(alphas), (cfg.batch,), generator=gen, device=dev)
            a = alphas[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with _autocast(dev):
                context = text(ids).last_hidden_state
                eps = unet(xt, t, context).sample
            per = ((eps.float() - noise) ** 2).mean(dim=(1, 2, 3))
            loss = (per * weights[t]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.update(step)
            pending.append((step, loss.detach(), lr))
            step += 1
            if step % 50 == 0 or step == total:
                recent = flush()[-10:]
                recent = sum(recent) / max(1, len(recent))
                log(
                    f"unet step {step}/{total} loss {recent:.4f} ({(time.time() - t0) / step:.3f} s/step)"
                )
            if step % cfg.save_every == 0 and step < total:
                flush()
                snapshot(step, f)
        flush()
        snapshot(total, f)
    return meta


def _tail_mean(path: Path, f, n: int = 100) -> float:
    f.flush()
    rows = list(csv.DictReader(path.open()))[-n:]
    return round(sum(float(r["loss"]) for r in rows) / max(1, len(rows)), 5)


def _parse(kind: str):
    """The argparse type of a TrainConfig field: ints, floats and int tuples ("32,64,128")."""
    if kind == "tuple[int, ...]":
        return lambda text: tuple(int(v) for v in text.split(","))
    return {"int": int, "float": float, "bool": lambda text: text.lower() in ("1", "true", "yes")}[
        kind
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("edgegen/defaultmodel/weights"))
    ap.add_argument("--work", type=Path, default=Path("training/run"))
    ap.add_argument("--tiny", action="store_true", help="a few-second smoke run")
    ap.add_argument("--resume", type=Path, default=None, help="continue from a saved folder")
    ap.add_argument("--resume-text", action="store_true", help="keep its text encoder too")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--vae", type=Path, default=None, help="take the VAE from this folder")
    ap.add_argument("--latents", type=Path, default=None, help="that VAE's latents.pt")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of UNet training")
    ap.add_argument("--vae-time-budget", type=float, default=None, help="at most this long")
    for fld in fields(TrainConfig):
        ap.add_argument("--" + fld.name.replace("_", "-"), type=_parse(fld.type), default=None)
    args = ap.parse_args(argv)
    cfg = tiny_config() if args.tiny else TrainConfig()
    overrides = {
        fld.name: getattr(args, fld.name)
        for fld in fields(TrainConfig)
        if getattr(args, fld.name, None) is not None
    }
    cfg = replace(cfg, **overrides)
    log(f"config {asdict(cfg)}")
    summary = train(
        cfg,
        args.out,
        args.work,
        args.resume,
        args.resume_text,
        device=args.device,
        vae_from=args.vae,
        latents_from=args.latents,
        time_budget=args.time_budget,
        vae_time_budget=args.vae_time_budget,
    )
    log(f"done: {summary}")


if __name__ == "__main__":
    sys.exit(main())
