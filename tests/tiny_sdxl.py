"""A tiny random SDXL model in diffusers layout, configured like diffusers' own SDXL tests.

Two text encoders (CLIP-style and one with a projection, as SDXL's OpenCLIP bigG), a UNet with
the "text_time" added conditioning and two transformer layers in its second block, and a VAE
whose config asks for float32 decoding (``force_upcast``), as SDXL's does.
"""

from __future__ import annotations

from pathlib import Path

from tiny_sd import TINY_CLIP, TINY_UNET, tiny_vae, write_tiny_clip_vocab


def build_tiny_sdxl(root: Path, seed: int = 0, turbo: bool = False) -> Path:
    import torch
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **TINY_UNET,
        layers_per_block=2,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=96,  # 6 time ids × 8 + 48 pooled
        cross_attention_dim=80,  # 32 + 48: both encoders' hidden states side by side
    )
    vae = tiny_vae(seed, sample_size=128, scaling_factor=0.13025)
    config = CLIPTextConfig(
        **TINY_CLIP,
        eos_token_id=1,
        num_hidden_layers=5,
        vocab_size=600,
        hidden_act="gelu",
        projection_dim=32,
    )
    # The second encoder is wider, as OpenCLIP bigG (1280) is than CLIP ViT-L (768): readers of
    # single-file checkpoints (diffusers' too) tell the two towers apart by width.
    config_2 = CLIPTextConfig(
        **{**config.to_dict(), "hidden_size": 48, "intermediate_size": 53, "projection_dim": 48}
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(config_2)
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if turbo:  # SDXL-Turbo's scheduler: Euler ancestral with trailing timesteps
        scheduler = EulerAncestralDiscreteScheduler(**common, timestep_spacing="trailing")
    else:
        scheduler = EulerDiscreteScheduler(**common, timestep_spacing="leading")
    vocab = root / "_vocab"
    write_tiny_clip_vocab(vocab)
    files = (str(vocab / "vocab.json"), str(vocab / "merges.txt"))
    tokenizer = CLIPTokenizer(*files, model_max_length=77)
    tokenizer_2 = CLIPTokenizer(*files, model_max_length=77, pad_token="!")  # as SDXL's
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    out = root / ("tiny-sdxl-turbo" if turbo else "tiny-sdxl")
    pipe.save_pretrained(out, safe_serialization=True)
    return out
