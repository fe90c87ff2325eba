"""Samplers against diffusers' schedulers built from the same scheduler config.

Each check drives both with the same deterministic fake "model" (a smooth function of the input
and the timestep) from the same initial latents, and for the stochastic samplers feeds diffusers
the very noise our sampler draws from its per-step keys (by replacing diffusers' ``randn_tensor``
with a lookup), so whole denoising loops can be compared number for number.
"""

import math

import diffusers
import mlx.core as mx
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_euler_ancestral_discrete, scheduling_lcm

from edgegen.errors import UnsupportedModelError, UsageError
from edgegen.samplers import DEFAULT_FOR_CLASS, SAMPLERS, SchedulerConfig, make_sampler
from edgegen.samplers.base import karras_sigmas, step_noise

SD1 = {  # stable-diffusion-v1-5 scheduler/scheduler_config.json
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
CONFIGS = {
    "sd1": SD1,
    "sd2_v": {**SD1, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction"},
    "trailing": {**SD1, "timestep_spacing": "trailing"},
    "karras": {**SD1, "use_karras_sigmas": True},
    # Only defaults: linear betas, and DDIM clips x0 while the others use their own spacing.
    "ddpm_defaults": {"num_train_timesteps": 1000},
    "sd1_sample": {**SD1, "prediction_type": "sample"},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
    "zero_snr_v": {
        **SD1,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    },
}
REFERENCE = {
    "ddim": diffusers.DDIMScheduler,
    "euler": diffusers.EulerDiscreteScheduler,
    "euler_a": diffusers.EulerAncestralDiscreteScheduler,
    "dpmpp_2m": diffusers.DPMSolverMultistepScheduler,
    "dpmpp_2m_karras": diffusers.DPMSolverMultistepScheduler,
    "lcm": diffusers.LCMScheduler,
}
STEPS = (1, 3, 4, 7, 20, 50)
SHAPE = (1, 4, 8, 8)


def reference(name: str, config: dict):
    if name == "dpmpp_2m_karras":
        config = {**config, "use_karras_sigmas": True}
    return REFERENCE[name].from_config(config)  # ignores (and logs) keys it does not take


def supported(name: str, config_name: str, steps: int) -> bool:
    if name == "euler_a" and CONFIGS[config_name].get("prediction_type") == "sample":
        return False  # diffusers' Euler ancestral raises NotImplementedError for x0 models
    return not (name == "lcm" and steps > 50)  # LCM's distillation schedule has 50 steps


def fake_model(x: np.ndarray, t: float) -> np.ndarray:
    """A smooth, timestep-dependent stand-in for a UNet, shared by both implementations."""
    return (0.6 * np.tanh(x) + 0.3 * np.sin(0.5 * x + t / 250.0)).astype(np.float32)


@pytest.fixture
def feed_noise(monkeypatch):
    """Make diffusers' stochastic schedulers draw the noise our sampler draws at each step."""
    state = {}

    def randn_tensor(shape, **_):
        return torch.from_numpy(state["noises"][state["scheduler"].step_index])

    for module in (scheduling_euler_ancestral_discrete, scheduling_lcm):
        monkeypatch.setattr(module, "randn_tensor", randn_tensor)

    def arm(scheduler, keys):
        state["scheduler"] = scheduler
        state["noises"] = [np.array(step_noise(SHAPE, k)) for k in keys]

    return arm


def run_reference(scheduler, x: np.ndarray, start: int = 0) -> np.ndarray:
    if hasattr(scheduler, "set_begin_index"):
        # As img2img pipelines do; without it diffusers finds its first step by looking the
        # timestep up, which picks the wrong index when a Karras schedule repeats a timestep.
        scheduler.set_begin_index(start)
    sample = torch.from_numpy(x)
    for t in scheduler.timesteps[start:]:
        model_in = scheduler.scale_model_input(sample, t)
        # A float64 model output makes diffusers do its step maths in float64: an oracle free of
        # float32 cancellation (sigma_max is 4e3-2e4 on zero-SNR and cosine schedules).
        out = torch.from_numpy(fake_model(model_in.numpy(), float(t)).astype(np.float64))
        sample = scheduler.step(out, t, sample).prev_sample
    return sample.numpy()


def run_ours(sampler, x: np.ndarray, keys, start: int = 0) -> np.ndarray:
    latents = mx.array(x)
    for i in range(start, len(sampler.timesteps)):
        model_in = sampler.scale_model_input(latents, i)
        out = mx.array(fake_model(np.array(model_in), float(sampler.timesteps[i])))
        latents = sampler.step(out, i, latents, key=keys[i])
    return np.array(latents)


def assert_close(ours: np.ndarray, ref: np.ndarray, rel: float = 1e-4) -> None:
    assert ours.shape == ref.shape
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err < rel, f"max abs error {err:.2e} relative to max |ref|"


def re_escape(value) -> str:
    return str(value).replace(".", r"\.")


def gaussian(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


# 1. Schedules and full denoising loops against diffusers --------------------------------------


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_matches_diffusers(name, config_name, feed_noise):
    config = CONFIGS[config_name]
    sampler = make_sampler(name, config)  # one object for every step count: must be reusable
    for steps in STEPS:
        if not supported(name, config_name, steps):
            continue
        sampler.set_timesteps(steps)
        ref = reference(name, config)
        ref.set_timesteps(steps)

        timesteps = ref.timesteps.numpy()
        assert sampler.timesteps.dtype == timesteps.dtype, steps
        np.testing.assert_allclose(sampler.timesteps, timesteps, rtol=1e-5, err_msg=str(steps))
        if hasattr(ref, "sigmas"):
            np.testing.assert_allclose(sampler.sigmas, ref.sigmas.numpy(), rtol=1e-5, atol=1e-7)
        assert sampler.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-5)

        keys = mx.random.split(mx.random.key(steps), len(sampler.timesteps))
        feed_noise(ref, keys)
        noise = gaussian(steps)
        ours = run_ours(sampler, noise * sampler.init_noise_sigma, keys)
        expected = run_reference(ref, noise * float(ref.init_noise_sigma))
        if not np.isfinite(expected).all():
            # diffusers' sigma_down = sqrt(sigma_to**2 - sigma_up**2) rounds below zero here in
            # float32; ours is the equal sigma_to**2 / sigma_from. The one known case:
            assert (name, config_name, steps) == ("euler_a", "cosine", 4)
            assert np.isfinite(ours).all()
            continue
        assert_close(ours, expected)


@pytest.mark.parametrize("name", SAMPLERS)
def test_img2img_add_noise_and_partial_loop_match_diffusers(name, feed_noise):
    """Noise an image to step i as diffusers' img2img does, then denoise from i to the end."""
    steps = 20
    for config_name in ("sd1", "karras", "sd2_v"):
        config = CONFIGS[config_name]
        sampler = make_sampler(name, config)
        sampler.set_timesteps(steps)
        x0, noise = gaussian(1), gaussian(2)
        for start in (0, 7, steps - 1):
            ref = reference(name, config)
            ref.set_timesteps(steps)
            if hasattr(ref, "set_begin_index"):
                ref.set_begin_index(start)
            t = ref.timesteps[start : start + 1]
            expected = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), t).numpy()
            noisy = np.array(sampler.add_noise(mx.array(x0), mx.array(noise), start))
            assert_close(noisy, expected, rel=1e-6)

            keys = mx.random.split(mx.random.key(start), steps)
            feed_noise(ref, keys)
            assert_close(run_ours(sampler, noisy, keys, start), run_reference(ref, expected, start))


@pytest.mark.parametrize(
    "name, class_name",
    [("euler", "EulerDiscreteScheduler"), ("euler_a", "EulerAncestralDiscreteScheduler")],
)
def test_turbo_trailing_single_step_is_the_x0_prediction(name, class_name):
    """SD-Turbo (Euler) and SDXL-Turbo (Euler ancestral) ship "trailing" spacing for 1-4 steps."""
    config = {**SD1, "_class_name": class_name, "timestep_spacing": "trailing"}
    config.update(interpolation_type="linear", sigma_min=None, timestep_type="discrete")
    sampler = make_sampler(None, config)
    assert sampler.name == name
    sampler.set_timesteps(1)
    assert sampler.timesteps.tolist() == [999.0]
    sigma = float(sampler.sigmas[0])
    x = mx.array(gaussian(3)) * sampler.init_noise_sigma
    eps = mx.array(gaussian(4))
    x0 = np.array(sampler.step(eps, 0, x))  # no key needed: the last step adds no noise
    np.testing.assert_allclose(x0, np.array(x - sigma * eps), rtol=1e-5, atol=1e-5)


# 2. Stochastic samplers, state and precision ---------------------------------------------------


@pytest.mark.parametrize("name", ["euler_a", "lcm"])
def test_stochastic_step_is_a_function_of_the_key(name):
    sampler = make_sampler(name, SD1)
    sampler.set_timesteps(4)
    x, out = mx.array(gaussian(5)), mx.array(gaussian(6))
    a = np.array(sampler.step(out, 1, x, key=mx.random.key(1)))
    b = np.array(sampler.step(out, 1, x, key=mx.random.key(1)))
    c = np.array(sampler.step(out, 1, x, key=mx.random.key(2)))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2


def test_multistep_state_resets_between_runs():
    """dpmpp_2m keeps the previous prediction; a new set_timesteps must forget it.

    The interrupted run stops after step 4 and the new one (img2img) starts at step 5, so a
    stale prediction would look like the new run's predecessor.
    """
    keys = [None] * 20
    used = make_sampler("dpmpp_2m", SD1)
    used.set_timesteps(20)
    latents = mx.array(gaussian(7))
    for i in range(5):
        latents = used.step(mx.array(fake_model(np.array(latents), 0.0)), i, latents)
    used.set_timesteps(9)
    fresh = make_sampler("dpmpp_2m", SD1)
    fresh.set_timesteps(9)
    np.testing.assert_array_equal(
        run_ours(used, gaussian(8), keys, start=5), run_ours(fresh, gaussian(8), keys, start=5)
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_half_precision_model_output_is_stepped_in_float32(name):
    sampler = make_sampler(name, SD1)
    sampler.set_timesteps(4)
    x, out = mx.array(gaussian(9)), mx.array(gaussian(10))
    full = sampler.step(out, 1, x, key=mx.random.key(0))
    half = sampler.step(out.astype(mx.float16), 1, x, key=mx.random.key(0))
    assert half.dtype == mx.float32
    assert_close(np.array(half), np.array(full), rel=2e-3)


def test_karras_sigmas_follow_the_rho_spacing():
    sigmas = karras_sigmas(0.03, 14.6, 10)
    assert sigmas[0] == pytest.approx(14.6) and sigmas[-1] == pytest.approx(0.03)
    steps = np.diff(sigmas ** (1 / 7))
    np.testing.assert_allclose(steps, steps[0])


# 3. Configuration, registry and errors --------------------------------------------------------


def test_config_reads_the_upstream_keys():
    d = {
        **CONFIGS["sd2_v"],
        "timestep_spacing": "trailing",
        "use_karras_sigmas": True,
        "original_inference_steps": 40,
        "timestep_scaling": 5.0,
    }
    c = SchedulerConfig.from_dict(d)
    assert (c.class_name, c.prediction_type, c.timestep_spacing) == (
        "DDIMScheduler",
        "v_prediction",
        "trailing",
    )
    assert (c.beta_start, c.beta_end, c.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert (c.steps_offset, c.set_alpha_to_one, c.clip_sample) == (1, False, False)
    assert (c.use_karras_sigmas, c.original_inference_steps, c.timestep_scaling) == (True, 40, 5.0)
    absent = SchedulerConfig.from_dict({})
    assert absent.timestep_spacing is None and absent.clip_sample is None
    # Each sampler fills what is absent with its diffusers class's defaults.
    ddim, euler, lcm = (make_sampler(n, {}).config for n in ("ddim", "euler", "lcm"))
    assert (ddim.timestep_spacing, ddim.clip_sample, ddim.beta_schedule) == (
        "leading",
        True,
        "linear",
    )
    assert (euler.timestep_spacing, euler.clip_sample) == ("linspace", False)
    assert (lcm.beta_start, lcm.beta_end, lcm.beta_schedule) == (0.00085, 0.012, "scaled_linear")


@pytest.mark.parametrize(
    "key, value",
    [
        ("prediction_type", "flow_prediction"),
        ("beta_schedule", "sigmoid"),
        ("timestep_spacing", "uniform"),
        ("interpolation_type", "log_linear"),
        ("use_exponential_sigmas", True),
        ("sigma_min", 0.1),
    ],
)
def test_unsupported_config_values_are_named(key, value):
    with pytest.raises(UnsupportedModelError, match=key):
        make_sampler("euler", {**SD1, key: value})


def test_unknown_sampler_name_lists_the_valid_ones():
    with pytest.raises(UsageError) as info:
        make_sampler("k_lms", SD1)
    message = str(info.value)
    assert "k_lms" in message
    assert all(name in message for name in SAMPLERS)
    assert set(SAMPLERS) == {"ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm"}


def test_default_sampler_follows_the_config_class():
    assert make_sampler(None, SD1).name == "dpmpp_2m"  # PNDM: see DEFAULT_FOR_CLASS
    assert make_sampler(None, CONFIGS["sd2_v"]).name == "ddim"
    assert make_sampler(None, {**SD1, "_class_name": "LCMScheduler"}).name == "lcm"
    assert make_sampler(None, {}).name == "dpmpp_2m"
    assert all(v in SAMPLERS for v in DEFAULT_FOR_CLASS.values())
    with pytest.raises(UnsupportedModelError, match="FlowMatchEulerDiscreteScheduler"):
        make_sampler(None, {"_class_name": "FlowMatchEulerDiscreteScheduler"})


@pytest.mark.parametrize("name", SAMPLERS)
def test_bad_steps_and_indices_raise_usage_errors(name):
    sampler = make_sampler(name, SD1)
    with pytest.raises(UsageError, match="set_timesteps"):
        sampler.step(mx.zeros(SHAPE), 0, mx.zeros(SHAPE))
    for bad in (0, -1, 1001, 2.5, True):
        with pytest.raises(UsageError, match=re_escape(bad)):
            sampler.set_timesteps(bad)
    sampler.set_timesteps(np.int64(4))  # a numpy integer is an integer
    with pytest.raises(UsageError, match="outside"):
        sampler.add_noise(mx.zeros(SHAPE), mx.zeros(SHAPE), len(sampler.timesteps))


def test_lcm_refuses_more_steps_than_its_distillation_schedule():
    sampler = make_sampler("lcm", SD1)
    with pytest.raises(UsageError, match="51"):
        sampler.set_timesteps(51)


def test_init_noise_sigma_matches_the_spacing_convention():
    """Leading spacing scales initial noise by sqrt(sigma_max**2 + 1), the others by sigma_max."""
    leading = make_sampler("euler", {**SD1, "timestep_spacing": "leading"})
    leading.set_timesteps(20)
    top = float(leading.sigmas.max())
    assert leading.init_noise_sigma == pytest.approx(math.sqrt(top * top + 1))
