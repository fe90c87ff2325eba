"""UNet parity with diffusers' UNet2DConditionModel on tiny random models saved by diffusers."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from edgegen.converters.source import load_component
from edgegen.errors import UnsupportedModelError, WeightMappingError
from edgegen.models.unet import UNetConfig

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

# Three levels so that every block kind appears: cross-attention down/up blocks, plain ones,
# the mid block with its transformer, two downsamplers and two upsamplers.
_BASE = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=24,
    norm_num_groups=16,
)
SD1 = dict(_BASE, attention_head_dim=4)  # the head COUNT, for every block
SD2 = dict(
    _BASE,
    attention_head_dim=(2, 4, 8),  # heads per block
    use_linear_projection=True,
    transformer_layers_per_block=(1, 2, 2),
    flip_sin_to_cos=False,
    freq_shift=1,
)
SDXL = dict(
    _BASE,
    attention_head_dim=(2, 4, 8),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=16 + 6 * 8,
)
LCM = dict(SD1, time_cond_proj_dim=12)


def _save(tmp_path, config: dict, name: str = "unet"):
    torch.manual_seed(0)
    model = diffusers.UNet2DConditionModel(**config).eval()
    # Random (not zero-initialised) output convs, so every path contributes to the output.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def _rel_err(ours: mx.array, ref: torch.Tensor) -> float:
    a = np.array(ours)
    b = ref.detach().numpy().transpose(0, 2, 3, 1)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _run(ref, ours, h: int, w: int, added: dict | None = None, dtype: mx.Dtype = mx.float32):
    torch.manual_seed(1)
    x = torch.randn(2, 4, h, w)
    t = torch.tensor([10, 731])
    ctx = torch.randn(2, 7, 24)
    with torch.no_grad():
        want = ref(x, t, ctx, **(added or {})).sample
    mx_added = None
    if added:
        mx_added = {}
        for k, v in added.items():
            items = v.items() if isinstance(v, dict) else [(k, v)]
            mx_added.update({kk: mx.array(vv.numpy()) for kk, vv in items})
    got = ours(
        mx.array(x.numpy().transpose(0, 2, 3, 1)).astype(dtype),
        mx.array(t.numpy()),
        mx.array(ctx.numpy()).astype(dtype),
        mx_added,
    )
    return got, want


@pytest.mark.parametrize("name, config", [("sd1", SD1), ("sd2", SD2)])
@pytest.mark.parametrize("size", [(8, 16), (9, 12)])
def test_unet_matches_diffusers(tmp_path, name, config, size):
    ref, folder = _save(tmp_path, config)
    ours = load_component("unet", folder)
    got, want = _run(ref, ours, *size)
    assert got.shape == (2, *size, 4)
    assert _rel_err(got, want) <= 1e-4


def test_sd1_head_count_convention(tmp_path):
    _, folder = _save(tmp_path, SD1)
    ours = load_component("unet", folder)
    cfg = ours.config
    assert cfg.heads == (4, 4, 4)
    block = ours.down_blocks[1].attentions[0].transformer_blocks[0]
    assert block.attn1.heads == 4 and block.attn1.to_q.weight.shape == (64, 64)


def test_sdxl_text_time_embedding_matches_diffusers(tmp_path):
    ref, folder = _save(tmp_path, SDXL)
    ours = load_component("unet", folder)
    torch.manual_seed(2)
    added = {
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, 16),
            "time_ids": torch.tensor([[512.0, 512, 0, 0, 512, 512], [768, 512, 8, 0, 768, 512]]),
        }
    }
    got, want = _run(ref, ours, 8, 8, added)
    assert _rel_err(got, want) <= 1e-4


def test_lcm_timestep_cond_matches_diffusers(tmp_path):
    ref, folder = _save(tmp_path, LCM)
    ours = load_component("unet", folder)
    torch.manual_seed(3)
    got, want = _run(ref, ours, 8, 8, {"timestep_cond": torch.randn(2, 12)})
    assert _rel_err(got, want) <= 1e-4


def test_fp16_load_runs_close_to_fp32(tmp_path):
    ref, folder = _save(tmp_path, SD1)
    ours = load_component("unet", folder, dtype=mx.float16)
    assert ours.conv_in.weight.dtype == mx.float16
    got, want = _run(ref, ours, 8, 8, dtype=mx.float16)
    assert got.dtype == mx.float16
    assert _rel_err(got.astype(mx.float32), want) <= 2e-2


@pytest.mark.parametrize(
    "change, named",
    [
        ({"_class_name": "UNet2DModel"}, "UNet2DModel"),
        ({"down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]}, "SimpleCross"),
        ({"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, "UNetMidBlock2DSimpleCrossAttn"),
        ({"addition_embed_type": "image"}, "'image'"),
        ({"class_embed_type": "timestep"}, "class_embed_type"),
        ({"resnet_time_scale_shift": "scale_shift"}, "scale_shift"),
    ],
)
def test_unsupported_config_is_named(change, named):
    with pytest.raises(UnsupportedModelError, match=named):
        UNetConfig.from_dict({"_class_name": "UNet2DConditionModel", **change})


def test_sd15_default_config_reads_explicit_keys():
    cfg = UNetConfig.from_dict(
        {
            "_class_name": "UNet2DConditionModel",
            "attention_head_dim": 8,
            "block_out_channels": [320, 640, 1280, 1280],
            "cross_attention_dim": 768,
            "layers_per_block": 2,
            "sample_size": 64,
        }
    )
    assert cfg.heads == (8, 8, 8, 8) and cfg.cross_attention_dim == (768,) * 4
    assert cfg.layers_per_block == (2, 2, 2, 2) and not cfg.use_linear_projection


def test_missing_weight_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    _, folder = _save(tmp_path, SD1)
    path = folder / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    del weights["mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"]
    save_file(weights, path)
    with pytest.raises(WeightMappingError, match=r"attn2\.to_k\.weight"):
        load_component("unet", folder)


def test_unexpected_weight_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    _, folder = _save(tmp_path, SD1)
    path = folder / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    weights["down_blocks.0.attentions.0.extra.weight"] = np.zeros((3,), np.float32)
    save_file(weights, path)
    with pytest.raises(WeightMappingError, match="extra"):
        load_component("unet", folder)


def test_config_round_trip_from_saved_folder(tmp_path):
    _, folder = _save(tmp_path, SD2)
    cfg = UNetConfig.from_dict(json.loads((folder / "config.json").read_text()))
    assert cfg.heads == (2, 4, 8) and cfg.use_linear_projection
    assert cfg.transformer_layers_per_block == (1, 2, 2)
