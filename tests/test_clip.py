"""CLIP text encoder parity with transformers on tiny random models saved by transformers."""

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_sd import TINY_CLIP
from transformers import CLIPTextConfig as HFConfig
from transformers import CLIPTextModel as HFModel
from transformers import CLIPTextModelWithProjection as HFModelWithProjection

from edgegen.converters.source import load_component
from edgegen.errors import UnsupportedModelError, UsageError, WeightMappingError
from edgegen.models.clip import (
    CLIPTextConfig,
    encode_prompt_embeddings,
    encode_sdxl_prompt_embeddings,
)

VOCAB = 1000
# Shapes as in diffusers' get_dummy_components(); the variants differ where SD models differ.
BASE = dict(TINY_CLIP, num_hidden_layers=5, vocab_size=VOCAB)
VARIANTS = {
    # SD 1.x: OpenAI CLIP-L, quick_gelu, legacy eos_token_id=2 (pool at argmax of the ids).
    "sd1": (HFModel, dict(BASE, eos_token_id=2, hidden_act="quick_gelu")),
    # SD 2.x: OpenCLIP-H, exact gelu; a current config pools at the first eos_token_id.
    "sd2": (HFModel, dict(BASE, eos_token_id=7, hidden_act="gelu")),
    # SDXL text_encoder_2: OpenCLIP-bigG with a projection.
    "sdxl2": (
        HFModelWithProjection,
        dict(BASE, eos_token_id=2, hidden_act="gelu", projection_dim=24),
    ),
}


def rel_err(ours: mx.array, ref: torch.Tensor) -> float:
    ref = ref.detach().numpy()
    return float(np.abs(np.array(ours) - ref).max() / np.abs(ref).max())


def prompt_ids(eos: int, pad: int) -> np.ndarray:
    """Two tokenizer-like rows: <bos> text <eos> <pad>…, with ids above eos inside the text."""
    rng = np.random.default_rng(0)
    ids = np.full((2, 77), pad, dtype=np.int32)
    for row, n in enumerate((5, 40)):
        ids[row, 0] = 0
        ids[row, 1 : 1 + n] = rng.integers(8, VOCAB - 1, n)
        ids[row, 1 + n] = eos
    return ids


def save_reference(variant: str, root: Path) -> tuple[torch.nn.Module, Path]:
    cls, kwargs = VARIANTS[variant]
    torch.manual_seed(0)
    model = cls(HFConfig(**kwargs)).eval()
    model.save_pretrained(root / variant)
    return model, root / variant


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    return {v: save_reference(v, root) for v in VARIANTS}


def variant_ids(variant: str) -> np.ndarray:
    if variant == "sd2":
        return prompt_ids(eos=7, pad=7)  # pad == eos: the FIRST eos must be pooled
    return prompt_ids(eos=VOCAB - 1, pad=VOCAB - 1)  # SD1-style: eos is the largest id, ties


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_outputs_match_transformers(saved, variant):
    ref_model, folder = saved[variant]
    ids = variant_ids(variant)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids).long(), output_hidden_states=True)
    model = load_component("text_encoder", folder)
    out = model(mx.array(ids), output_hidden_states=True)

    assert rel_err(out.last_hidden_state, ref.last_hidden_state) <= 1e-4
    assert len(out.hidden_states) == len(ref.hidden_states) == 6
    for ours, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert rel_err(ours, theirs) <= 1e-4
    if variant == "sdxl2":
        assert model.config.with_projection
        assert out.text_embeds.shape == (2, 24)
        assert rel_err(out.text_embeds, ref.text_embeds) <= 1e-4
    else:
        assert out.text_embeds is None
        assert rel_err(out.pooler_output, ref.pooler_output) <= 1e-4


def test_pooling_takes_first_eos_not_largest_id(saved):
    ref_model, folder = saved["sd2"]
    ids = variant_ids("sd2")
    model = load_component("text_encoder", folder)
    out = model(mx.array(ids))
    last = np.array(out.last_hidden_state)
    np.testing.assert_array_equal(np.array(out.pooler_output), last[[0, 1], [6, 41]])


@pytest.mark.parametrize("clip_skip", [None, 0, 1, 2])
def test_clip_skip_follows_diffusers_encode_prompt(saved, clip_skip):
    ref_model, folder = saved["sd1"]
    ids = variant_ids("sd1")
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids).long(), output_hidden_states=True)
        if clip_skip is None:
            expected = ref.last_hidden_state
        else:
            # StableDiffusionPipeline.encode_prompt: hidden_states[-(clip_skip + 1)], then the
            # final layer norm (transformers 5 keeps it on the model, not under text_model).
            expected = ref_model.final_layer_norm(ref.hidden_states[-(clip_skip + 1)])
    got = encode_prompt_embeddings(load_component("text_encoder", folder), mx.array(ids), clip_skip)
    assert rel_err(got, expected) <= 1e-4
    if clip_skip:
        assert rel_err(got, ref.last_hidden_state) > 1e-2  # really a different layer


@pytest.mark.parametrize("clip_skip", [None, 1])
def test_sdxl_embeddings_use_penultimate_layer_and_projection(saved, clip_skip):
    ref_model, folder = saved["sdxl2"]
    ids = variant_ids("sdxl2")
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids).long(), output_hidden_states=True)
    hidden, pooled = encode_sdxl_prompt_embeddings(
        load_component("text_encoder", folder), mx.array(ids), clip_skip
    )
    skip = clip_skip or 0
    assert rel_err(hidden, ref.hidden_states[-(skip + 2)]) <= 1e-4
    assert rel_err(pooled, ref.text_embeds) <= 1e-4


def test_clip_skip_out_of_range_names_valid_range(saved):
    model = load_component("text_encoder", saved["sd1"][1])
    with pytest.raises(UsageError, match="between 0 and 5"):
        encode_prompt_embeddings(model, mx.array(variant_ids("sd1")), 6)


def test_too_long_input_is_refused(saved):
    model = load_component("text_encoder", saved["sd1"][1])
    with pytest.raises(UsageError, match="77"):
        model(mx.zeros((1, 78), dtype=mx.int32))


def test_transformers4_layout_with_position_ids_loads(saved, tmp_path):
    # Real SD repos were saved by transformers 4: "text_model." prefix plus a position_ids buffer.
    ref_model, folder = saved["sd1"]
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    tensors = {f"text_model.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    tensors["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(tensors, tmp_path / "model.safetensors")
    ids = variant_ids("sd1")
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids).long())
    out = load_component("text_encoder", tmp_path)(mx.array(ids))
    assert rel_err(out.last_hidden_state, ref.last_hidden_state) <= 1e-4


def copy_with_weights(folder: Path, dest: Path, edit) -> Path:
    dest.mkdir()
    (dest / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, dest / "model.safetensors")
    return dest


def test_extra_weight_is_named(saved, tmp_path):
    def add(t):
        t["encoder.layers.0.self_attn.rotary.weight"] = torch.zeros(3)

    bad = copy_with_weights(saved["sd1"][1], tmp_path / "text_encoder", add)
    with pytest.raises(WeightMappingError, match=r"text_encoder.*self_attn\.rotary\.weight"):
        load_component("text_encoder", bad)


def test_missing_weight_is_named(saved, tmp_path):
    def drop(t):
        del t["encoder.layers.3.mlp.fc2.bias"]

    bad = copy_with_weights(saved["sd1"][1], tmp_path / "text_encoder", drop)
    with pytest.raises(WeightMappingError, match=r"layers\.3\.mlp\.fc2\.bias"):
        load_component("text_encoder", bad)


def test_projection_weight_without_projection_config_is_refused(saved, tmp_path):
    def add(t):
        t["text_projection.weight"] = torch.zeros(24, 32)

    bad = copy_with_weights(saved["sd1"][1], tmp_path / "text_encoder", add)
    with pytest.raises(WeightMappingError, match="text_projection"):
        load_component("text_encoder", bad)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architectures": ["T5EncoderModel"]}, "T5EncoderModel"),
        ({"architectures": ["CLIPModel"]}, "CLIPModel"),
        ({"hidden_act": "relu"}, "relu"),
    ],
)
def test_unsupported_config_is_named(saved, change, message):
    config = json.loads((saved["sd1"][1] / "config.json").read_text())
    with pytest.raises(UnsupportedModelError, match=message):
        CLIPTextConfig.from_dict({**config, **change})


def test_config_reads_transformers_keys(saved):
    config = CLIPTextConfig.from_dict(json.loads((saved["sdxl2"][1] / "config.json").read_text()))
    assert config == CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        projection_dim=24,
        eos_token_id=2,
        with_projection=True,
    )


def test_float16_load_casts_weights_and_stays_close(saved):
    ref_model, folder = saved["sd2"]
    ids = variant_ids("sd2")
    model = load_component("text_encoder", folder, dtype=mx.float16)
    assert model.text_model.encoder.layers[0].self_attn.q_proj.weight.dtype == mx.float16
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids).long())
    out = model(mx.array(ids)).last_hidden_state
    assert out.dtype == mx.float16
    assert rel_err(out.astype(mx.float32), ref.last_hidden_state) <= 1e-2
