"""The one table of Stable Diffusion components: which families have them, which MLX module
each is, and the rules that map its diffusers/transformers weights onto that module.

Every reader (diffusers folders and cache snapshots, single-file checkpoints, store artifacts)
builds a component's module and maps its weights through this table, so a new component or
family is added here alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.nn as nn

from edgegen._blas import keep_freed_memory
from edgegen.converters import rules_clip, rules_unet, rules_vae
from edgegen.converters.mapping import Rule
from edgegen.models.clip import CLIPTextConfig, CLIPTextModel
from edgegen.models.unet import UNet2DConditionModel, UNetConfig
from edgegen.models.vae import AutoencoderKL, VAEConfig


def _unet(config: dict[str, Any]) -> nn.Module:
    keep_freed_memory()  # its 40 MB activations would otherwise be faulted in anew each op
    return UNet2DConditionModel(UNetConfig.from_dict(config))


def _text_encoder(config: dict[str, Any]) -> nn.Module:
    return CLIPTextModel(CLIPTextConfig.from_dict(config))


@dataclass(frozen=True)
class ComponentKind:
    build: Callable[[dict[str, Any]], nn.Module]  # the module from its config (lazy parameters)
    rules: list[Rule]  # diffusers/transformers weight names → the module's
    tokenizer: str | None = None  # the tokenizer folder that goes with it


COMPONENTS: dict[str, ComponentKind] = {
    "text_encoder": ComponentKind(_text_encoder, rules_clip.RULES, "tokenizer"),
    "text_encoder_2": ComponentKind(_text_encoder, rules_clip.RULES, "tokenizer_2"),
    "unet": ComponentKind(_unet, rules_unet.RULES),
    "vae": ComponentKind(lambda c: AutoencoderKL(VAEConfig.from_dict(c)), rules_vae.RULES),
}
MODEL_COMPONENTS = tuple(COMPONENTS)  # in conversion order

# The model components of each family (plus, in a diffusers folder, tokenizers and scheduler).
FAMILIES: dict[str, tuple[str, ...]] = {
    "sd1": ("text_encoder", "unet", "vae"),
    "sd2": ("text_encoder", "unet", "vae"),
    "sdxl": ("text_encoder", "text_encoder_2", "unet", "vae"),
}


def folders(family: str) -> tuple[str, ...]:
    """The folders a diffusers model of ``family`` has: components, tokenizers, scheduler."""
    comps = FAMILIES[family]
    tokenizers = tuple(t for c in comps if (t := COMPONENTS[c].tokenizer))
    return (*comps, *tokenizers, "scheduler")


def _kind(component: str) -> ComponentKind:
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; valid: {', '.join(COMPONENTS)}")
    return COMPONENTS[component]


def build_module(component: str, config: dict[str, Any]) -> nn.Module:
    """The MLX module for ``component`` described by its diffusers/transformers config.

    Parameters are created lazily by MLX and never evaluated before real weights replace them.
    """
    return _kind(component).build(config)


def rules(component: str) -> list[Rule]:
    """The weight-mapping rules from diffusers/transformers names to ``component``'s module."""
    return _kind(component).rules
