"""Whole-pipeline parity with diffusers' StableDiffusionPipeline from the same initial latents."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from edgegen.params import GenerationParams
from edgegen.pipelines import load_pipeline

DIFFUSERS_SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
}
WIDTH, HEIGHT = 64, 128  # 9:16-like and non-square, so no axis mix-up can hide


def _reference(
    path,
    scheduler: str,
    prompt: str,
    negative: str,
    latents: np.ndarray,
    steps: int,
    guidance: float,
):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    cls = getattr(diffusers, DIFFUSERS_SCHEDULERS[scheduler])
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    out = pipe(
        prompt,
        negative_prompt=negative or None,
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=HEIGHT,
        width=WIDTH,
        latents=torch.from_numpy(latents.transpose(0, 3, 1, 2).copy()),
        output_type="np",
    )
    return (out.images * 255).round().astype(np.uint8)


@pytest.mark.parametrize("family", ["sd1", "sd2"])
@pytest.mark.parametrize("scheduler", list(DIFFUSERS_SCHEDULERS))
def test_pipeline_matches_diffusers(family, scheduler, request):
    path = request.getfixturevalue(f"tiny_{family}")
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((1, HEIGHT // 2, WIDTH // 2, 4)).astype(np.float32)
    prompt, negative = "the sun over a calm sea", "blurry"
    ref = _reference(path, scheduler, prompt, negative, latents, steps=4, guidance=6.0)

    sd = load_pipeline(path)
    p = GenerationParams(
        prompt, negative, steps=4, guidance=6.0, sampler=scheduler, width=WIDTH, height=HEIGHT
    )
    ours = sd.generate(p, latents=mx.array(latents))
    assert ours.shape == ref.shape == (1, HEIGHT, WIDTH, 3)
    mae = np.abs(ours.astype(np.float64) - ref.astype(np.float64)).mean()
    assert mae <= 1.0, f"mean abs error {mae:.3f}/255 vs diffusers"


def test_no_guidance_skips_unconditional_pass(tiny_sd1):
    sd = load_pipeline(tiny_sd1)
    calls = []
    unet = sd.unet

    def counting(x, t, ctx, *a, **k):
        calls.append(x.shape[0])
        return unet(x, t, ctx, *a, **k)

    sd._unet = counting
    p = GenerationParams("a sun", steps=2, guidance=1.0, width=WIDTH, height=HEIGHT)
    sd.generate(p)
    assert calls == [1, 1]
    calls.clear()
    sd.generate(GenerationParams("a sun", steps=2, guidance=5.0, width=WIDTH, height=HEIGHT))
    assert calls == [2, 2]


def test_seeds_are_reproducible_and_distinct(tiny_sd1):
    sd = load_pipeline(tiny_sd1)
    p = GenerationParams("a red sun", steps=2, seed=11, width=WIDTH, height=HEIGHT)
    a = sd.generate(p)
    b = sd.generate(p)
    c = sd.generate(GenerationParams("a red sun", steps=2, seed=12, width=WIDTH, height=HEIGHT))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_default_size_is_portrait_9_16(tiny_sd1):
    sd = load_pipeline(tiny_sd1)
    w, h = sd.default_size
    assert w % 64 == 0 and h % 64 == 0 and h > w


def test_compute_dtype_follows_the_artifact_on_a_gpu_only():
    import mlx.core as mx

    from edgegen.device import compute_dtype

    assert compute_dtype(mx.float16, gpu=True) == mx.float16
    assert compute_dtype(mx.bfloat16, gpu=True) == mx.bfloat16
    assert compute_dtype(mx.float16, gpu=False) == mx.float32
    assert compute_dtype(mx.float32, gpu=True) == mx.float32
    assert compute_dtype(None, gpu=True) == mx.float32
