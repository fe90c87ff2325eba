"""Diffusion samplers, one algorithm per module, none of which imports a model.

``make_sampler(name, scheduler_config_dict)`` is the entry point: ``name`` is one of
``SAMPLERS`` or None for the sampler the model's own ``scheduler_config.json`` names.

Driving one, as diffusers' pipelines drive a scheduler (``i`` is the step index)::

    sampler = make_sampler("dpmpp_2m", config)
    sampler.set_timesteps(steps)
    x = noise * sampler.init_noise_sigma
    for i, t in enumerate(sampler.timesteps):
        eps = unet(sampler.scale_model_input(x, i), t, ...)
        x = sampler.step(eps, i, x, key=step_keys[i])
"""

from __future__ import annotations

from typing import Any

from edgegen.errors import UnsupportedModelError, UsageError
from edgegen.samplers.base import Sampler, SchedulerConfig
from edgegen.samplers.ddim import DDIMSampler
from edgegen.samplers.dpmpp_2m import DPMSolverPP2MKarrasSampler, DPMSolverPP2MSampler
from edgegen.samplers.euler import EulerSampler
from edgegen.samplers.euler_ancestral import EulerAncestralSampler
from edgegen.samplers.lcm import LCMSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "ddim": DDIMSampler,
    "euler": EulerSampler,
    "euler_a": EulerAncestralSampler,
    "dpmpp_2m": DPMSolverPP2MSampler,
    "dpmpp_2m_karras": DPMSolverPP2MKarrasSampler,
    "lcm": LCMSampler,
}

# The sampler for each diffusers scheduler class a model may name. Classes we do not implement
# but that share the same discrete beta schedule (PNDM is what SD 1.x/2.0 ship; PLMS and the
# other multistep solvers) get DPM-Solver++(2M): the deterministic multistep method that is
# closest to them and reaches the same quality in 20-25 steps, where DDIM needs about 50.
# DPM-Solver++(2M) still honours the config's use_karras_sigmas.
DEFAULT_FOR_CLASS = {
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_a",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "LCMScheduler": "lcm",
    "PNDMScheduler": "dpmpp_2m",
    "LMSDiscreteScheduler": "dpmpp_2m",
    "DDPMScheduler": "dpmpp_2m",
    "DEISMultistepScheduler": "dpmpp_2m",
    "UniPCMultistepScheduler": "dpmpp_2m",
    "DPMSolverSinglestepScheduler": "dpmpp_2m",
    "HeunDiscreteScheduler": "dpmpp_2m",
    "KDPM2DiscreteScheduler": "dpmpp_2m",
    "KDPM2AncestralDiscreteScheduler": "euler_a",
}
FALLBACK = "dpmpp_2m"  # a config without `_class_name`


def make_sampler(name: str | None, config: dict[str, Any] | SchedulerConfig) -> Sampler:
    """Build a sampler from a diffusers scheduler config (a dict, or an already parsed one).

    Raises UsageError for an unknown ``name`` (listing the valid ones), UnsupportedModelError
    for a config value no sampler implements, or, with ``name=None``, for a scheduler class we
    cannot stand in for (e.g. a flow-matching scheduler).
    """
    parsed = config if isinstance(config, SchedulerConfig) else SchedulerConfig.from_dict(config)
    if name is None:
        if parsed.class_name is None:
            name = FALLBACK
        elif parsed.class_name in DEFAULT_FOR_CLASS:
            name = DEFAULT_FOR_CLASS[parsed.class_name]
        else:
            raise UnsupportedModelError(
                f"scheduler class {parsed.class_name!r} is not supported; "
                f"choose a sampler explicitly: {', '.join(SAMPLERS)}"
            )
    if name not in SAMPLERS:
        raise UsageError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](parsed)


__all__ = ["DEFAULT_FOR_CLASS", "SAMPLERS", "Sampler", "SchedulerConfig", "make_sampler"]
