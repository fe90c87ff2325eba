"""AutoencoderKL parity with diffusers on a tiny random VAE, loading, errors and tiled decoding.

Also checks the shared blocks (models/blocks.py) one by one against diffusers' own modules,
so a UNet failure and a VAE failure can be told apart.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import torch
from float32 import assert_peak_close
from safetensors.torch import load_file, save_file
from tiny_sd import tiny_vae

from edgegen.converters.source import load_component
from edgegen.errors import UnsupportedModelError, UsageError, WeightMappingError
from edgegen.models import blocks
from edgegen.models.blocks import (
    Conv2d,
    Downsample2D,
    ResnetBlock2D,
    SpatialSelfAttention,
    Upsample2D,
    upsample_nearest,
)
from edgegen.models.vae import AutoencoderKL, VAEConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"
# Rename map from current diffusers attention names to the pre-0.14 ones.
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def rel_err(ours: mx.array, ref: torch.Tensor) -> float:
    """max|a-b| / max|b|, with the reference converted from NCHW to NHWC."""
    b = ref.detach().numpy()
    if b.ndim == 4:
        b = b.transpose(0, 2, 3, 1)
    return float(np.abs(np.array(ours) - b).max() / np.abs(b).max())


def nhwc(t: torch.Tensor) -> mx.array:
    return mx.array(t.numpy().transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random diffusers AutoencoderKL (as in diffusers' get_dummy_components), saved."""
    ref = tiny_vae(seed=0).eval()
    folder = tmp_path_factory.mktemp("vae")
    ref.save_pretrained(folder)
    return ref, folder


def test_config_reads_diffusers_keys(tiny):
    _, folder = tiny
    cfg = VAEConfig.from_dict(json.loads((folder / "config.json").read_text()))
    assert cfg.block_out_channels == (32, 64)
    assert (cfg.latent_channels, cfg.layers_per_block, cfg.norm_num_groups) == (4, 1, 32)
    assert cfg.scaling_factor == pytest.approx(0.18215)
    assert cfg.shift_factor is None
    assert cfg.scale == 2
    sdxl = VAEConfig.from_dict(
        {"_class_name": "AutoencoderKL", "scaling_factor": 0.13025, "force_upcast": True}
    )
    assert sdxl.scaling_factor == 0.13025 and sdxl.scale == 8 and sdxl.force_upcast


def test_encode_matches_diffusers(tiny):
    ref, folder = tiny
    vae = load_component("vae", folder)
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        dist = ref.encode(x).latent_dist
    mean, logvar = vae.encode(nhwc(x))
    assert rel_err(mean, dist.mean) <= 1e-4
    assert rel_err(logvar, dist.logvar) <= 1e-4


def test_decode_matches_diffusers(tiny):
    ref, folder = tiny
    vae = load_component("vae", folder)
    z = torch.randn(2, 4, 12, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        image = ref.decode(z).sample
    assert rel_err(vae.decode(nhwc(z)), image) <= 1e-4


def test_without_mid_attention_or_quant_convs(tmp_path):
    from diffusers import AutoencoderKL as TorchVAE

    torch.manual_seed(0)
    ref = TorchVAE(
        block_out_channels=(32, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=16,
        mid_block_add_attention=False,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()
    ref.save_pretrained(tmp_path)
    vae = load_component("vae", tmp_path)
    assert "quant_conv" not in vae and not vae.decoder.mid_block.attentions
    z = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        image = ref.decode(z).sample
    assert rel_err(vae.decode(nhwc(z)), image) <= 1e-4


def test_old_attention_key_names_load_identically(tiny, tmp_path):
    _, folder = tiny
    state = load_file(folder / WEIGHTS)
    renamed = {}
    for key, value in state.items():
        for new, old in OLD_NAMES.items():
            key = key.replace(f".{new}.", f".{old}.")
        renamed[key] = value
    assert any(".proj_attn." in k for k in renamed)
    save_file(renamed, tmp_path / WEIGHTS)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    new, old = load_component("vae", folder), load_component("vae", tmp_path)
    z = mx.random.normal((1, 8, 8, 4), key=mx.random.key(0))
    assert mx.array_equal(new.decode(z), old.decode(z))
    assert mx.array_equal(new.encode(new.decode(z))[0], old.encode(old.decode(z))[0])


def test_fp16_load_casts_weights_and_stays_close(tiny):
    _, folder = tiny
    vae32, vae16 = load_component("vae", folder), load_component("vae", folder, dtype=mx.float16)
    assert vae16.decoder.conv_in.weight.dtype == mx.float16
    z = mx.random.normal((1, 8, 8, 4), key=mx.random.key(1))
    a, b = vae32.decode(z), vae16.decode(z.astype(mx.float16))
    assert b.dtype == mx.float16
    assert float(mx.abs(a - b.astype(mx.float32)).max() / mx.abs(a).max()) < 1e-2


@pytest.mark.parametrize(
    "config",
    [
        {"_class_name": "AutoencoderKLFlux2"},
        {"_class_name": "SD3Transformer2DModel"},
        {"down_block_types": ["DownEncoderBlock2D"]},
        {
            "_class_name": "AutoencoderKL",
            "block_out_channels": [32, 64],
            "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        },
        {"_class_name": "AutoencoderKL", "act_fn": "gelu"},
    ],
)
def test_unsupported_architecture_is_named(config):
    with pytest.raises(UnsupportedModelError) as e:
        VAEConfig.from_dict(config)
    assert str(e.value).count("\n") == 0
    bad = config.get("_class_name", "None")
    if bad == "AutoencoderKL":
        bad = "AttnDownEncoderBlock2D" if "down_block_types" in config else "gelu"
    assert bad in str(e.value)


def test_unsupported_class_folder(tiny, tmp_path):
    _, folder = tiny
    cfg = json.loads((folder / "config.json").read_text())
    cfg["_class_name"] = "AutoencoderTiny"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="AutoencoderTiny"):
        load_component("vae", tmp_path)


def test_missing_key_is_named(tiny, tmp_path):
    _, folder = tiny
    state = load_file(folder / WEIGHTS)
    del state["decoder.up_blocks.1.resnets.0.conv2.bias"]
    save_file(state, tmp_path / WEIGHTS)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(WeightMappingError, match=r"decoder\.up_blocks\.1\.resnets\.0\.conv2\.bias"):
        load_component("vae", tmp_path)


def test_unexpected_key_is_named(tiny, tmp_path):
    _, folder = tiny
    state = load_file(folder / WEIGHTS)
    state["decoder.extra.weight"] = torch.zeros(3)
    save_file(state, tmp_path / WEIGHTS)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(WeightMappingError, match=r"decoder\.extra\.weight"):
        load_component("vae", tmp_path)


def test_tiled_decode_is_exact_when_one_tile_covers(tiny):
    _, folder = tiny
    vae = load_component("vae", folder)
    z = mx.random.normal((1, 12, 20, 4), key=mx.random.key(2))
    assert mx.array_equal(vae.decode_tiled(z, tile=20, overlap=8), vae.decode(z))


def test_tiled_blending_reassembles_a_local_decoder(tiny):
    # With a decoder that has no cross-tile context (nearest upsampling), any tiling must
    # reproduce the whole image: this checks placement and weight normalisation exactly.
    _, folder = tiny
    vae = load_component("vae", folder)
    vae.decode = lambda z: upsample_nearest(z[..., :3], 2)
    z = mx.random.normal((2, 23, 37, 4), key=mx.random.key(3))
    whole = vae.decode(z)
    for tile, overlap in [(8, 3), (16, 8), (10, 0), (23, 5)]:
        tiled = vae.decode_tiled(z, tile=tile, overlap=overlap)
        assert tiled.shape == whole.shape
        assert float(mx.abs(tiled - whole).max()) < 1e-5


def test_tiled_decode_close_to_untiled(tiny):
    # Each tile normalises with its own GroupNorm statistics, so tiles only approximate the
    # whole; with 32-latent tiles this random model stays within ~10% mean error.
    _, folder = tiny
    vae = load_component("vae", folder)
    z = mx.random.normal((1, 48, 80, 4), key=mx.random.key(4))
    whole, tiled = np.array(vae.decode(z)), np.array(vae.decode_tiled(z, 32, 16))
    assert np.abs(tiled - whole).mean() / np.abs(whole).mean() < 0.15


@pytest.mark.parametrize("tile, overlap", [(0, 0), (16, 16), (16, -1)])
def test_tiled_decode_rejects_bad_tiles(tile, overlap):
    vae = AutoencoderKL(VAEConfig(block_out_channels=(32,), layers_per_block=1))
    with pytest.raises(UsageError, match=str(tile)):
        vae.decode_tiled(mx.zeros((1, 40, 40, 4)), tile, overlap)


# Shared blocks, one at a time against diffusers' modules.


def _copy_weights(ours, theirs) -> None:
    from mlx.utils import tree_flatten, tree_unflatten

    sd = {k: mx.array(v.detach().numpy()) for k, v in theirs.state_dict().items()}
    sd = {k: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for k, v in sd.items()}
    assert set(sd) == {k for k, _ in tree_flatten(ours.parameters())}
    ours.update(tree_unflatten(list(sd.items())))


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        p.data.normal_(0, 0.1)  # also the norms' weight/bias, which init to 1/0
    return module.eval()


@pytest.mark.parametrize("cin, cout, temb", [(64, 64, None), (64, 96, None), (64, 128, 40)])
def test_resnet_block_matches_diffusers(cin, cout, temb):
    from diffusers.models.resnet import ResnetBlock2D as TorchResnet

    ref = _randomise(
        TorchResnet(in_channels=cin, out_channels=cout, temb_channels=temb, groups=32, eps=1e-6)
    )
    ours = ResnetBlock2D(cin, cout, temb, 32, 1e-6)
    _copy_weights(ours, ref)
    x = torch.randn(2, cin, 10, 14)
    t = torch.randn(2, temb) if temb else None
    with torch.no_grad():
        want = ref(x, t)
    got = ours(nhwc(x), None if t is None else mx.array(t.numpy()))
    assert rel_err(got, want) <= 1e-4


@pytest.mark.parametrize("padding", [0, 1])
def test_downsample_matches_diffusers(padding):
    from diffusers.models.downsampling import Downsample2D as TorchDown

    ref = _randomise(TorchDown(32, use_conv=True, out_channels=32, padding=padding, name="op"))
    ours = Downsample2D(32, use_conv=True, padding=padding)
    _copy_weights(ours, ref)
    x = torch.randn(1, 32, 10, 14)
    with torch.no_grad():
        assert rel_err(ours(nhwc(x)), ref(x)) <= 1e-4


def test_upsample_matches_diffusers():
    from diffusers.models.upsampling import Upsample2D as TorchUp

    ref = _randomise(TorchUp(32, use_conv=True))
    ours = Upsample2D(32)
    _copy_weights(ours, ref)
    x = torch.randn(1, 32, 5, 7)
    with torch.no_grad():
        assert rel_err(ours(nhwc(x)), ref(x)) <= 1e-4


def test_spatial_attention_matches_diffusers():
    from diffusers.models.attention_processor import Attention

    ref = _randomise(
        Attention(
            64,
            heads=1,
            dim_head=64,
            norm_num_groups=32,
            eps=1e-6,
            residual_connection=True,
            bias=True,
            upcast_softmax=True,
            _from_deprecated_attn_block=True,
        )
    )
    ours = SpatialSelfAttention(64, 32, 1e-6)
    _copy_weights(ours, ref)
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        assert rel_err(ours(nhwc(x)), ref(x)) <= 1e-4


@pytest.mark.parametrize(
    "shape, cout, kernel, stride, padding",
    [
        ((2, 7, 9, 128), 160, 3, 1, 1),  # Winograd, odd sizes (cropped tiles), batch 2
        ((1, 8, 6, 32), 64, 3, 1, 1),  # shifted taps
        ((2, 6, 5, 128), 3, 3, 1, 1),  # narrow output (RGB head)
        ((2, 5, 5, 16), 8, 1, 1, 0),  # 1×1 as one GEMM
        ((1, 8, 8, 16), 16, 3, 2, 1),  # stride 2: mx.conv2d
    ],
)
def test_conv2d_paths_match_mlx_conv(shape, cout, kernel, stride, padding):
    conv = Conv2d(shape[-1], cout, kernel, stride=stride, padding=padding)
    x = mx.random.normal(shape, key=mx.random.key(5))
    want = mx.conv2d(x, conv.weight, stride=stride, padding=padding) + conv.bias
    assert float(mx.abs(conv(x) - want).max() / mx.abs(want).max()) <= 1e-5
    conv.weight = conv.weight * 2  # cached kernel layouts must follow a new weight
    want = mx.conv2d(x, conv.weight, stride=stride, padding=padding) + conv.bias
    assert float(mx.abs(conv(x) - want).max() / mx.abs(want).max()) <= 1e-5


def test_winograd_bands_match_one_pass(monkeypatch):
    conv = Conv2d(128, 128, 3, padding=1)
    x = mx.random.normal((1, 11, 10, 128), key=mx.random.key(6))
    whole = conv(x)
    monkeypatch.setattr(blocks, "_BAND_BYTES", 1)  # one row of tiles per band
    # Bands are GEMMs of other shapes, so rounding may differ (tests/float32.py): measured
    # 4.5e-7 of the peak with Zen/Haswell kernels, 0 with Sandybridge/Nehalem.
    assert_peak_close(np.array(conv(x)), np.array(whole), 2.0**-18)
