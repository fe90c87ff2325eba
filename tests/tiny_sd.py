"""Tiny random Stable Diffusion models in diffusers layout, built the way diffusers' own tests do.

Shared by the pipeline, CLI and converter tests. Every model is seeded, so it is identical from
run to run, and saved with safetensors exactly as ``save_pretrained`` writes real models.
"""

from __future__ import annotations

import json
from pathlib import Path


def _byte_level_chars() -> list[str]:
    # The printable stand-ins CLIP's byte-level BPE uses for the 256 byte values.
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(0xA1, 0xAC + 1))
        + list(range(0xAE, 0xFF + 1))
    )
    chars, n = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def write_tiny_clip_vocab(
    folder: Path, merges: tuple[str, ...] = ("t h", "th e</w>", "s u", "su n</w>")
) -> None:
    """A CLIP BPE vocabulary of single bytes (plus a few merges) in SD 1.5's file layout."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for c in _byte_level_chars():
        tokens += [c, c + "</w>"]
    tokens += [m.replace(" ", "") for m in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_tiny_sd(root: Path, family: str = "sd1", seed: int = 0) -> Path:
    """Save a tiny random SD1-style (``"sd1"``) or SD2-style (``"sd2"``: linear projections,
    per-block head dims, gelu text encoder, v-prediction) pipeline under ``root``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sd2 = family == "sd2"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2,
        norm_num_groups=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=4,
            vocab_size=600,
            hidden_act="gelu" if sd2 else "quick_gelu",
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction" if sd2 else "epsilon",
    )
    vocab_dir = root / "_vocab"
    write_tiny_clip_vocab(vocab_dir)
    # SD 2.x pads with "!" (id of the first byte token), SD 1.x with <|endoftext|>.
    tokenizer = CLIPTokenizer(
        vocab=str(vocab_dir / "vocab.json"),
        merges=str(vocab_dir / "merges.txt"),
        pad_token="!" if sd2 else "<|endoftext|>",
        model_max_length=77,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = root / f"tiny-{family}"
    pipe.save_pretrained(out, safe_serialization=True)
    if not sd2:
        # Real SD 1.5 repos carry vocab.json + merges.txt and no tokenizer.json.
        (out / "tokenizer" / "tokenizer.json").unlink()
        for name in ("vocab.json", "merges.txt"):
            (out / "tokenizer" / name).write_bytes((vocab_dir / name).read_bytes())
    return out
