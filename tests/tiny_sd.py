"""Tiny random Stable Diffusion models in diffusers layout, built the way diffusers' own tests do.

Shared by the pipeline, CLI and converter tests. Every model is seeded, so it is identical from
run to run, and saved with safetensors exactly as ``save_pretrained`` writes real models.

The tiny configs (diffusers' ``get_dummy_components()`` shapes) live here once, as plain
keyword dicts: ``TINY_UNET``, ``TINY_VAE`` and ``TINY_CLIP``. The SD 1.x/2.x and SDXL builders,
and the VAE and CLIP parity tests, derive theirs from them with ``dict(TINY_..., change=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

# Two-level UNet: a plain block and a cross-attention block each way. Each family adds its
# layers per block, head dims, projection and cross-attention width.
TINY_UNET = dict(
    block_out_channels=(32, 64),
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=32,
)
# Two-level AutoencoderKL (SD 1.x/2.x scaling factor; SDXL overrides it and the sample size).
TINY_VAE = dict(
    block_out_channels=(32, 64),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
)
# CLIP text encoder widths; each use sets its depth, vocabulary, eos id and activation.
TINY_CLIP = dict(
    bos_token_id=0,
    pad_token_id=1,
    hidden_size=32,
    intermediate_size=37,
    layer_norm_eps=1e-05,
    num_attention_heads=4,
)


def tiny_vae(seed: int = 0, **changes):
    """A seeded diffusers ``AutoencoderKL`` of ``TINY_VAE`` with ``changes`` applied."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**{**TINY_VAE, **changes})


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
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sd2 = family == "sd2"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **TINY_UNET,
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2,
    )
    vae = tiny_vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TINY_CLIP,
            eos_token_id=1,
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


def make_checkpoint(
    src: Path,
    family: str,
    path: Path,
    extra: dict | None = None,
    *,
    dtype: str = "float32",
    ema: bool = False,
) -> Path:
    """The diffusers folder ``src`` as one single-file checkpoint in its release's layout.

    Keys are those real releases carry (``cond_stage_model.transformer.text_model.*`` for SD 1.x,
    OpenCLIP's ``cond_stage_model.model.*`` for SD 2.x, ``conditioner.embedders.{0,1}.*`` for
    SDXL), with the training leftovers they also hold (the noise schedule, ``position_ids``,
    ``logit_scale``, EMA bookkeeping). For SD 2.x the text encoder has one more transformer layer
    than diffusers keeps, and the unused projection, as SD 2 releases have. ``dtype="float16"``
    makes a "pruned fp16" file; ``ema=True`` adds EMA copies of the UNet under LitEma's dotless
    names (``model_ema.diffusion_modelinput_blocks00weight``) with other values, as an un-pruned
    training checkpoint has; readers take the non-EMA weights (diffusers' default too).
    """
    import mlx.core as mx

    from edgegen.converters.checkpoint import PREFIXES, from_diffusers
    from edgegen.converters.safetensors_io import read_component
    from edgegen.fileio import read_json

    out = {}
    for comp, prefix in PREFIXES[family].items():
        cfg = read_json(src / comp / "config.json")
        for key, value in from_diffusers(read_component(src / comp), family, comp, cfg).items():
            out[prefix + key] = value
    open_clip = {"sd2": "text_encoder", "sdxl": "text_encoder_2"}
    if family in open_clip:
        comp = open_clip[family]
        p = PREFIXES[family][comp]
        if family == "sd2":
            n = read_json(src / comp / "config.json")["num_hidden_layers"]
            last = f"{p}transformer.resblocks.{n - 1}."
            for key in [k for k in out if k.startswith(last)]:
                out[key.replace(f".{n - 1}.", f".{n}.", 1)] = out[key] + 1
            width = out[p + "ln_final.weight"].shape[0]
            out[p + "text_projection"] = mx.zeros((width, width))
        out[p + "logit_scale"] = mx.array(4.6)
    clip_l = PREFIXES[family].get("text_encoder") if family != "sd2" else None
    if clip_l:
        out[clip_l + "text_model.embeddings.position_ids"] = mx.arange(77)[None].astype(mx.int64)
    if ema:
        unet = PREFIXES[family]["unet"]
        for key in [k for k in out if k.startswith(unet)]:
            dotless = "model_ema." + key[len("model.") :].replace(".", "")
            out[dotless] = out[key] * 0.5 + 0.25
        out["model_ema.decay"] = mx.array(0.9999)
        out["model_ema.num_updates"] = mx.array(1000, dtype=mx.int32)
    betas = mx.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    out["betas"] = betas
    out["alphas_cumprod"] = mx.cumprod(1 - betas)
    if dtype == "float16":
        out = {k: v.astype(mx.float16) if v.dtype == mx.float32 else v for k, v in out.items()}
    out.update(extra or {})
    mx.save_safetensors(str(path), out)
    return path
