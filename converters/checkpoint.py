"""Single-file Stable Diffusion checkpoints (CompVis / Stability SGM layout) → diffusers names.

A single ``.safetensors`` holds every component under the original training code's names:

============================  ==========================================================
``model.diffusion_model.``    the UNet (``input_blocks``/``middle_block``/``output_blocks``)
``first_stage_model.``        the VAE (``encoder.down.N.block.M``, ``decoder.up.N`` …)
``cond_stage_model.transformer.``  SD 1.x: CLIP ViT-L, already in transformers' names
``cond_stage_model.model.``   SD 2.x: OpenCLIP ViT-H (``transformer.resblocks.N``, fused qkv)
``conditioner.embedders.0.transformer.``  SDXL: CLIP ViT-L (transformers' names)
``conditioner.embedders.1.model.``        SDXL: OpenCLIP bigG, with ``text_projection``
============================  ==========================================================

:func:`to_diffusers` renames (and, for OpenCLIP's fused attention, splits) one component's
tensors to diffusers' names, so the very same strict rules and loaders as for a diffusers folder
apply afterwards. :func:`from_diffusers` is the inverse, used by the tests to make a checkpoint
out of a tiny diffusers model. The architecture numbers the renaming needs (resnets per block,
which blocks have attention, how many text layers diffusers keeps) come from the component
configs, given by ``--config-from`` (a diffusers folder or cached repo id of the same model
family), since a checkpoint carries no config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mlx.core as mx

from edgegen.converters.components import MODEL_COMPONENTS
from edgegen.converters.diffusers import open_diffusers, resolve
from edgegen.converters.safetensors_io import read_file
from edgegen.converters.source import ModelSource, defaults_by_name
from edgegen.errors import ModelError, UnsupportedModelError, UsageError

PREFIXES = {
    "sd1": {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "cond_stage_model.transformer.",
    },
    "sd2": {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "cond_stage_model.model.",
    },
    "sdxl": {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "conditioner.embedders.0.transformer.",
        "text_encoder_2": "conditioner.embedders.1.model.",
    },
}
OPEN_CLIP = {("sd2", "text_encoder"), ("sdxl", "text_encoder_2")}
# Training-time extras that are not part of the inference model.
_IGNORED = re.compile(
    r"(model_ema\..*|betas|alphas_cumprod.*|sqrt_.*|log_one_minus_alphas_cumprod|"
    r"posterior_.*|logvar|.*\.position_ids|.*\.logit_scale|.*\.attn_mask)"
)

_RESNET = {  # CompVis ResBlock → diffusers ResnetBlock2D (UNet)
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_UNET_TOP = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}
_VAE_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def detect_family(keys: list[str]) -> str:
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    sample = ", ".join(sorted(keys)[:3])
    raise UnsupportedModelError(
        "not a Stable Diffusion 1.x/2.x/XL single-file checkpoint: no known text encoder "
        f"prefix (first keys: {sample})"
    )


def _sub(name: str, table: dict[str, str]) -> str:
    """Replace the longest leading dotted prefix of ``name`` found in ``table``."""
    for old in sorted(table, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return table[old] + name[len(old) :]
    return name


def _inverse(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


# UNet ------------------------------------------------------------------------------------


def _unet_key(key: str, layers: int) -> str:
    top = _sub(key, _UNET_TOP)
    if top != key:
        return top
    if m := re.fullmatch(r"input_blocks\.(\d+)\.(\d+)\.(.+)", key):
        block, layer = divmod(int(m[1]) - 1, layers + 1)
        part, rest = int(m[2]), m[3]
        if layer == layers:  # the block's last slot: its downsampler ("op" conv)
            return f"down_blocks.{block}.downsamplers.0.conv" + rest.removeprefix("op")
        if part == 0:
            return f"down_blocks.{block}.resnets.{layer}.{_sub(rest, _RESNET)}"
        return f"down_blocks.{block}.attentions.{layer}.{rest}"
    if m := re.fullmatch(r"middle_block\.(\d)\.(.+)", key):
        part, rest = int(m[1]), m[2]
        if part == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{part // 2}.{_sub(rest, _RESNET)}"
    if m := re.fullmatch(r"output_blocks\.(\d+)\.(\d+)\.(.+)", key):
        block, layer = divmod(int(m[1]), layers + 1)
        part, rest = int(m[2]), m[3]
        if part == 0:
            return f"up_blocks.{block}.resnets.{layer}.{_sub(rest, _RESNET)}"
        if rest.startswith("conv."):  # an upsampler (attention modules have no "conv")
            return f"up_blocks.{block}.upsamplers.0.{rest}"
        return f"up_blocks.{block}.attentions.{layer}.{rest}"
    return key  # unknown: left as is, so the strict mapping names it


def _unet_key_back(key: str, layers: int, attention_up: list[bool]) -> str:
    top = _sub(key, _inverse(_UNET_TOP))
    if top != key:
        return top
    res_back = _inverse(_RESNET)
    if m := re.fullmatch(
        r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", key
    ):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = 1 + block * (layers + 1)
        if kind == "downsamplers":
            return f"input_blocks.{slot + layers}.0.op" + rest.removeprefix("conv")
        if kind == "resnets":
            return f"input_blocks.{slot + layer}.0.{_sub(rest, res_back)}"
        return f"input_blocks.{slot + layer}.1.{rest}"
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d)\.(.+)", key):
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{2 * int(m[2])}.{_sub(m[3], res_back)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = block * (layers + 1)
        if kind == "upsamplers":
            return f"output_blocks.{slot + layers}.{2 if attention_up[block] else 1}.{rest}"
        if kind == "resnets":
            return f"output_blocks.{slot + layer}.0.{_sub(rest, res_back)}"
        return f"output_blocks.{slot + layer}.1.{rest}"
    return key


# VAE -------------------------------------------------------------------------------------


def _vae_key(key: str, levels: int) -> str:
    key = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", key)
    key = re.sub(r"^(encoder|decoder)\.mid\.block_(\d)\.", _mid_resnet, key)
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(\w+)\.(weight|bias)", key):
        return f"{m[1]}.mid_block.attentions.0.{_VAE_ATTN.get(m[2], m[2])}.{m[3]}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.(.+)", key):
        prefix = f"encoder.down_blocks.{m[1]}."
        return prefix + _vae_block_rest(m[2], "downsample", "downsamplers")
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.(.+)", key):
        prefix = f"decoder.up_blocks.{levels - 1 - int(m[1])}."
        return prefix + _vae_block_rest(m[2], "upsample", "upsamplers")
    return key.replace(".nin_shortcut.", ".conv_shortcut.")


def _mid_resnet(m: re.Match[str]) -> str:
    return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."


def _vae_block_rest(rest: str, sampler: str, samplers: str) -> str:
    rest = re.sub(r"^block\.(\d+)\.", r"resnets.\1.", rest)
    rest = re.sub(rf"^{sampler}\.", f"{samplers}.0.", rest)
    return rest.replace("nin_shortcut", "conv_shortcut")


def _vae_key_back(key: str, levels: int) -> str:
    key = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", key)
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{_inverse(_VAE_ATTN)[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(.+)", key):
        index = int(m[3]) if m[2] == "down" else levels - 1 - int(m[3])
        rest = re.sub(r"^resnets\.", "block.", m[4]).replace("conv_shortcut", "nin_shortcut")
        rest = re.sub(r"^(down|up)samplers\.0\.", rf"{m[2]}sample.", rest)
        return f"{m[1]}.{m[2]}.{index}.{rest}"
    return key


# OpenCLIP text towers --------------------------------------------------------------------

_OPEN_CLIP_LAYER = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def _open_clip(tensors: dict[str, mx.array], layers: int, projection: bool) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    for key, value in tensors.items():
        if key == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key.startswith("ln_final."):
            out["text_model.final_layer_norm." + key[len("ln_final.") :]] = value
        elif key == "text_projection":
            if projection:  # stored (hidden, projection); a Linear weight is its transpose
                out["text_projection.weight"] = value.T
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key):
            if int(m[1]) >= layers:
                continue  # diffusers keeps SD 2.x's encoder cut at the penultimate layer
            base = f"text_model.encoder.layers.{m[1]}."
            if m := re.fullmatch(r"attn\.in_proj_(weight|bias)", m[2]):
                for name, part in zip(("q", "k", "v"), mx.split(value, 3, axis=0), strict=True):
                    out[f"{base}self_attn.{name}_proj.{m[1]}"] = part
            else:
                out[base + _sub(key.split(".", 3)[3], _OPEN_CLIP_LAYER)] = value
        else:
            out[key] = value  # unknown: the strict mapping names it
    return out


def _open_clip_back(tensors: dict[str, mx.array]) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    fused: dict[str, dict[str, mx.array]] = {}
    for key, value in tensors.items():
        if not key.startswith(("text_model.", "text_projection.")):
            key = "text_model." + key  # transformers 5 saves the tower without its prefix
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            base = f"transformer.resblocks.{m[1]}."
            if q := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", m[2]):
                fused.setdefault(f"{base}attn.in_proj_{q[2]}", {})[q[1]] = value
            else:
                out[base + _sub(m[2], _inverse(_OPEN_CLIP_LAYER))] = value
    for key, parts in fused.items():
        out[key] = mx.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    return out


# Public API --------------------------------------------------------------------------------


def _unet_numbers(config: dict[str, Any]) -> tuple[int, list[bool]]:
    layers = config.get("layers_per_block", 2)
    if isinstance(layers, list):
        if len(set(layers)) != 1:
            raise UnsupportedModelError(
                "checkpoints with per-block layers_per_block are not supported"
            )
        layers = layers[0]
    ups = config.get("up_block_types", [])
    return int(layers), [t.startswith("CrossAttn") for t in ups]


def to_diffusers(
    tensors: dict[str, mx.array], family: str, component: str, config: dict[str, Any]
) -> dict[str, mx.array]:
    """One component's tensors of a checkpoint (prefix already removed) under diffusers' names."""
    if component == "unet":
        layers, _ = _unet_numbers(config)
        return {_unet_key(k, layers): v for k, v in tensors.items()}
    if component == "vae":
        levels = len(config.get("block_out_channels", (128, 256, 512, 512)))
        return {_vae_key(k, levels): v for k, v in tensors.items()}
    if (family, component) in OPEN_CLIP:
        layers = int(config.get("num_hidden_layers", 23))
        projection = "CLIPTextModelWithProjection" in (config.get("architectures") or [])
        return _open_clip(tensors, layers, projection)
    return dict(tensors)  # transformers' CLIP: the names already match


def from_diffusers(
    tensors: dict[str, mx.array], family: str, component: str, config: dict[str, Any]
) -> dict[str, mx.array]:
    """The inverse of :func:`to_diffusers` (prefix not added); conv layouts stay as given."""
    if component == "unet":
        layers, attention_up = _unet_numbers(config)
        return {_unet_key_back(k, layers, attention_up): v for k, v in tensors.items()}
    if component == "vae":
        levels = len(config.get("block_out_channels", (128, 256, 512, 512)))
        out = {}
        for key, value in tensors.items():
            new = _vae_key_back(key, levels)
            if ".mid.attn_1." in new and new.endswith(".weight") and value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)  # CompVis stores them as 1×1 convs
            out[new] = value
        return out
    if (family, component) in OPEN_CLIP:
        return _open_clip_back(tensors)
    # Released checkpoints keep transformers' ``text_model.`` prefix, which transformers 5 drops.
    return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in tensors.items()}


def split_components(tensors: dict[str, mx.array], family: str) -> dict[str, dict[str, mx.array]]:
    """Group a checkpoint's tensors by component, prefixes removed; unknown keys are an error."""
    parts: dict[str, dict[str, mx.array]] = {c: {} for c in PREFIXES[family]}
    for key, value in tensors.items():
        if _IGNORED.fullmatch(key):
            continue
        for component, prefix in PREFIXES[family].items():
            if key.startswith(prefix):
                parts[component][key[len(prefix) :]] = value
                break
        else:
            raise ModelError(f"checkpoint has unexpected tensor {key!r} for a {family} model")
    return parts


# How pickled PyTorch files begin: a zip archive (torch.save since 1.6) or a raw pickle
# (protocol 2+ starts with the PROTO opcode, 0x80).
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


def refuse_pickle(path: Path) -> None:
    """Refuse a pickled checkpoint (``.ckpt``, ``.pt``, ``.bin``, or one misnamed) by its name
    and first bytes alone: unpickling runs whatever code the file names, so it is never read."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ModelError(f"cannot read {str(path)!r}: {e.strerror}") from e
    if path.suffix != ".safetensors" or head.startswith(_PICKLE_MAGIC):
        raise ModelError(
            f"{str(path)!r} is a pickled checkpoint, which can run code when read; edgegen reads "
            "single-file checkpoints only as .safetensors (convert it with a trusted tool first)"
        )


def open_checkpoint(
    path: Path, config_from: str | Path | None = None, prediction_type: str | None = None
) -> ModelSource:
    """Describe a single-file checkpoint as a convert source.

    Configs and tokenizers come from ``config_from`` (a diffusers folder or cached repo id of
    the same architecture, for fine-tunes with unusual settings), else from the standard
    release of the detected family (``checkpoint_presets``).
    """
    path = Path(path)
    refuse_pickle(path)
    tensors = read_file(path)
    family = detect_family(list(tensors))
    files: dict[str, Path] = {path.name: path}
    keep, source_family = None, family
    if config_from is None:
        from edgegen.converters.checkpoint_presets import preset_configs, preset_tokenizers

        configs = preset_configs(family, prediction_type)
        tokenizers, keep = preset_tokenizers(family)
    else:
        ref = open_diffusers(resolve(config_from))
        if ref.family != family and {ref.family, family} != {"sd1", "sd2"}:
            raise UsageError(
                f"the configuration source {str(config_from)!r} is a {ref.family} model but "
                f"{path.name} is {family}"
            )
        source_family = ref.family
        configs = {k: dict(v) for k, v in ref.configs.items()}
        if prediction_type is not None:
            configs["scheduler"]["prediction_type"] = prediction_type
        tokenizers = ref.tokenizers
        files.update(
            {f"config/{k}": v for k, v in ref.files.items() if not k.endswith(".safetensors")}
        )
    parts = split_components(tensors, family)
    wanted = [c for c in MODEL_COMPONENTS if c in configs]
    missing = [c for c in wanted if not parts.get(c)]
    if missing:
        raise ModelError(
            f"{str(path)!r} has no {missing[0]} weights ({PREFIXES[family][missing[0]]}…)"
        )
    return ModelSource(
        name=path.stem,
        family=source_family,
        kind="checkpoint",
        root=path,
        configs=configs,
        tokenizers=tokenizers,
        files=files,
        read=lambda component: to_diffusers(
            parts[component], family, component, configs[component]
        ),
        defaults=defaults_by_name(path.stem),
        keep=keep,
        hint="" if config_from else f"the standard {family} configuration does not fit it",
    )
