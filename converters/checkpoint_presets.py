"""Standard configurations of the Stable Diffusion releases, for single-file checkpoints.

A single ``.safetensors`` checkpoint carries weights but no configuration, and the people who
have one often have no diffusers folder to take it from. These are the component configs of
the public releases (as their diffusers repos publish them), chosen by the family the
checkpoint's keys reveal. What weights cannot reveal is asked for or defaulted visibly:

- SD 2.x predicts ``v`` at 768×768 (SD 2.0-v / 2.1) or ``epsilon`` at 512×512 (the
  ``-base`` models): ``--prediction-type`` picks one, default ``v_prediction`` (SD 2.1);
  the native size follows it.
- Tokenizers are rebuilt from OpenAI's BPE merge list (``converters/clip_vocab``), which
  every SD tokenizer shares; SD 2.x and SDXL's second tokenizer pad with ``!``.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from edgegen.errors import UsageError

_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
_CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "eos_token_id": 2,
}
_VAE = {
    "_class_name": "AutoencoderKL",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
_UNET_SD = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}

PRESETS: dict[str, dict[str, Any]] = {
    "sd1": {  # runwayml/stable-diffusion-v1-5
        "model_index": {"_class_name": "StableDiffusionPipeline"},
        "unet": _UNET_SD,
        "vae": _VAE,
        "text_encoder": _CLIP_L,
        "scheduler": {
            "_class_name": "PNDMScheduler",
            **_SCHEDULE,
            "steps_offset": 1,
            "skip_prk_steps": True,
            "set_alpha_to_one": False,
        },
    },
    "sd2": {  # stabilityai/stable-diffusion-2-1 (sample_size and prediction set below)
        "model_index": {"_class_name": "StableDiffusionPipeline"},
        "unet": {
            **_UNET_SD,
            "attention_head_dim": [5, 10, 20, 20],
            "cross_attention_dim": 1024,
            "use_linear_projection": True,
            "upcast_attention": True,
        },
        "vae": _VAE,
        "text_encoder": {
            **_CLIP_L,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 23,  # diffusers keeps OpenCLIP-H cut at the penultimate layer
            "num_attention_heads": 16,
            "hidden_act": "gelu",
            "projection_dim": 512,
        },
        "scheduler": {
            "_class_name": "DDIMScheduler",
            **_SCHEDULE,
            "steps_offset": 1,
            "clip_sample": False,
            "set_alpha_to_one": False,
        },
    },
    "sdxl": {  # stabilityai/stable-diffusion-xl-base-1.0
        "model_index": {
            "_class_name": "StableDiffusionXLPipeline",
            "force_zeros_for_empty_prompt": True,
        },
        "unet": {
            **_UNET_SD,
            "sample_size": 128,
            "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
            "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"],
            "block_out_channels": [320, 640, 1280],
            "attention_head_dim": [5, 10, 20],
            "transformer_layers_per_block": [1, 2, 10],
            "cross_attention_dim": 2048,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        },
        "vae": {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": _CLIP_L,
        "text_encoder_2": {
            **_CLIP_L,
            "architectures": ["CLIPTextModelWithProjection"],
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_attention_heads": 20,
            "hidden_act": "gelu",
            "projection_dim": 1280,
        },
        "scheduler": {
            "_class_name": "EulerDiscreteScheduler",
            **_SCHEDULE,
            "steps_offset": 1,
            "timestep_spacing": "leading",
        },
    },
}
PAD = {"sd1": {"tokenizer": "<|endoftext|>"}, "sd2": {"tokenizer": "!"}}
PAD["sdxl"] = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}


def preset_configs(family: str, prediction_type: str | None) -> dict[str, dict[str, Any]]:
    """The component configs of ``family``'s public release (a fresh copy)."""
    if family not in PRESETS:
        raise UsageError(f"no standard configuration for {family!r}; known: {list(PRESETS)}")
    configs = copy.deepcopy(PRESETS[family])
    if family == "sd2":
        prediction_type = prediction_type or "v_prediction"
        native = 768 if prediction_type == "v_prediction" else 512
        configs["unet"]["sample_size"] = native // 8
        configs["vae"]["sample_size"] = native
    configs["scheduler"]["prediction_type"] = prediction_type or "epsilon"
    return configs


def preset_tokenizers(family: str) -> tuple[dict[str, Path], tempfile.TemporaryDirectory]:
    """Standard CLIP tokenizer folders for ``family``, written into a temporary directory
    (returned too: the folders live as long as it does)."""
    from edgegen.converters.clip_vocab import write_tokenizer_files

    tmp = tempfile.TemporaryDirectory(prefix="edgegen-tokenizers-")
    folders = {}
    for which, pad in PAD[family].items():
        folders[which] = Path(tmp.name) / which
        write_tokenizer_files(folders[which], pad_token=pad)
    return folders, tmp
