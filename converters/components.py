"""The one table of Stable Diffusion components: which MLX module each is, and its key rules.

Every reader (diffusers folders, single-file checkpoints, store artifacts) builds a component's
module and maps its weights through this table, so a new component is added here alone.
"""

from __future__ import annotations

from typing import Any

import mlx.nn as nn

from edgegen._blas import keep_freed_memory
from edgegen.converters import rules_clip, rules_unet, rules_vae
from edgegen.converters.mapping import Rule
from edgegen.models.clip import CLIPTextConfig, CLIPTextModel
from edgegen.models.unet import UNet2DConditionModel, UNetConfig
from edgegen.models.vae import AutoencoderKL, VAEConfig

MODEL_COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")


def build_module(component: str, config: dict[str, Any]) -> nn.Module:
    """The MLX module for ``component`` described by its diffusers/transformers config.

    Parameters are created lazily by MLX and never evaluated before real weights replace them.
    """
    if component == "unet":
        keep_freed_memory()  # its 40 MB activations would otherwise be faulted in anew each op
        return UNet2DConditionModel(UNetConfig.from_dict(config))
    if component == "vae":
        return AutoencoderKL(VAEConfig.from_dict(config))
    if component.startswith("text_encoder"):
        return CLIPTextModel(CLIPTextConfig.from_dict(config))
    raise ValueError(f"unknown component {component!r}; valid: {', '.join(MODEL_COMPONENTS)}")


def rules(component: str) -> list[Rule]:
    """The weight-mapping rules from diffusers/transformers names to ``component``'s module."""
    if component == "unet":
        return rules_unet.RULES
    if component == "vae":
        return rules_vae.RULES
    if component.startswith("text_encoder"):
        return rules_clip.RULES
    raise ValueError(f"unknown component {component!r}; valid: {', '.join(MODEL_COMPONENTS)}")
