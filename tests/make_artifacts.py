"""Write the back-compat fixtures in tests/artifacts: one tiny converted model per format version.

Users' top complaint about converted models is that an update stops them loading. Each
``tests/artifacts/format-<N>/`` holds, as the edgegen that wrote format N converted them:

- ``micro-sd1-q4``: a micro SD1-style model (4-bit, so both packed and float tensors are
  covered), and ``expected.npy``, the image rendered from it with the parameters in ``RENDER``;
- ``micro-voice-q8``: a micro random Piper-VITS voice (8-bit), and ``expected-voice.npy``, the
  noise-free audio it spoke for ``VOICE_IDS``.

tests/test_convert_compat.py checks that today's loaders still read every one of them and
produce the same image and audio. Run this only when ``edgegen.store.FORMAT_VERSION`` goes up,
to ADD the new version's folder::

    .venv/bin/python tests/make_artifacts.py

It writes only fixtures that are missing: old fixtures are never regenerated.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import edgegen  # noqa: F401  (optimized BLAS before mlx)

HERE = Path(__file__).parent
NAME = "micro-sd1-q4"
VOICE = "micro-voice-q8"
VOICE_IDS = [1, 0, 5, 0, 6, 0, 7, 0, 8, 0, 2]
RENDER = {"prompt": "a red sun", "negative": "", "steps": 2, "guidance": 4.0, "seed": 3, "size": 64}


def build_micro_sd1(root: Path) -> Path:
    """A diffusers SD1-style model small enough to keep in git (about 300 KB converted)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from tiny_sd import write_tiny_clip_vocab
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32),
        layers_per_block=1,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=8,
        time_embedding_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            vocab_size=600,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    write_tiny_clip_vocab(root / "_vocab")
    vocab = root / "_vocab"
    tok = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"), model_max_length=77)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    out = root / "micro-sd1"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_micro_voice():
    """A micro random Piper-VITS voice, wide enough in two layers to be quantized (a few MB)."""
    import numpy as np
    from mlx.utils import tree_flatten

    from edgegen.models.vits import Vits, VitsConfig

    cfg = VitsConfig(
        num_symbols=12, hidden_channels=64, inter_channels=16, filter_channels=256,
        n_heads=2, n_layers=1, dp_filter_channels=16, flow_n_layers=1, flow_n_flows=2,
        resblock="1", resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),),
        upsample_rates=(4, 2), upsample_initial_channel=128, upsample_kernel_sizes=(8, 4),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    weights = {
        k: (rng.standard_normal(v.shape) * 0.2).astype(np.float32)
        for k, v in tree_flatten(Vits(cfg).parameters())
    }
    symbols = "^_$ abcdefgh"
    voice_json = {
        "audio": {"sample_rate": 22050},
        "espeak": {"voice": "en-us"},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_id_map": {c: [i] for i, c in enumerate(symbols)},
        "num_symbols": len(symbols),
        "num_speakers": 1,
        "license": "CC0 (random test weights)",
    }
    return cfg, weights, voice_json


def speak(voice: Path):
    import numpy as np

    from edgegen.speech.synthesizer import read_artifact

    model = read_artifact(voice)[0]
    audio, _ = model.synthesize(VOICE_IDS, noise_scale=0.0, noise_w=0.0)
    return np.asarray(audio, dtype=np.float32)


def render(model: Path):
    import numpy as np

    from edgegen.params import GenerationParams
    from edgegen.pipelines import load_pipeline

    r = RENDER
    sd = load_pipeline(model)
    p = GenerationParams(
        r["prompt"], r["negative"], steps=r["steps"], guidance=r["guidance"], seed=r["seed"],
        width=r["size"], height=r["size"],
    )  # fmt: skip
    return np.asarray(sd.generate(p, latents=sd.initial_noise(r["seed"], r["size"], r["size"])))


def main() -> None:
    import numpy as np

    from edgegen import store
    from edgegen.convert import ConvertOptions, convert
    from edgegen.speech.convert import write_voice

    target = HERE / "artifacts" / f"format-{store.FORMAT_VERSION}"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEGEN_HOME"] = str(Path(tmp) / "home")
        if not (target / NAME).exists():
            src = build_micro_sd1(Path(tmp))
            options = ConvertOptions(quantize=4, group_size=32, name=NAME, check_steps=1)
            result = convert(src, options)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(result.path, target / NAME)
            np.save(target / "expected.npy", render(target / NAME))
            print(f"wrote {target / NAME}")
        if not (target / VOICE).exists():
            cfg, weights, voice_json = build_micro_voice()
            source = {"path": "random weights (tests/make_artifacts.py)", "files": {}}
            path = write_voice(VOICE, cfg, weights, voice_json, source, quantize=8)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(path, target / VOICE)
            np.save(target / "expected-voice.npy", speak(target / VOICE))
            print(f"wrote {target / VOICE}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
