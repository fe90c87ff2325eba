"""Write the back-compat fixtures in tests/artifacts: one tiny converted model per format version.

Users' top complaint about converted models is that an update stops them loading. Each
``tests/artifacts/format-<N>/`` holds a micro SD1-style model converted (4-bit, so both packed
and float tensors are covered) by the edgegen that wrote format N, plus ``expected.npy``: the
image that edgegen rendered from it with the parameters in ``RENDER``. tests/test_convert_compat.py
checks that today's loader still reads every one of them and renders the same image.

Run it only when ``edgegen.store.FORMAT_VERSION`` goes up, to ADD the new version's folder::

    .venv/bin/python tests/make_artifacts.py

It refuses to overwrite an existing version: old fixtures are never regenerated.
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


def render(model: Path):  # noqa: ANN201
    import numpy as np

    from edgegen.params import GenerationParams
    from edgegen.pipeline import StableDiffusion

    r = RENDER
    sd = StableDiffusion.load(model)
    p = GenerationParams(
        r["prompt"], r["negative"], steps=r["steps"], guidance=r["guidance"], seed=r["seed"],
        width=r["size"], height=r["size"],
    )  # fmt: skip
    return np.asarray(sd.generate(p, latents=sd.initial_noise(r["seed"], r["size"], r["size"])))


def main() -> None:
    import numpy as np

    from edgegen import store
    from edgegen.converters.convert_sd import ConvertOptions, convert

    target = HERE / "artifacts" / f"format-{store.FORMAT_VERSION}"
    if target.exists():
        sys.exit(f"{target} exists; old fixtures are never regenerated")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEGEN_HOME"] = str(Path(tmp) / "home")
        src = build_micro_sd1(Path(tmp))
        result = convert(src, ConvertOptions(quantize=4, group_size=32, name=NAME, check_steps=1))
        target.mkdir(parents=True)
        shutil.copytree(result.path, target / NAME)
        np.save(target / "expected.npy", render(target / NAME))
    print(f"wrote {target}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
