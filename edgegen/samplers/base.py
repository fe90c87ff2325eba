"""Schedule math and the interface shared by every sampler.

The noise schedule (betas, cumulative alphas, timestep spacing, Karras sigmas) is computed once
in numpy with the precisions diffusers uses in torch (float32 values, float64 running product),
so our timesteps and sigmas can be compared with diffusers' number for number. Latents are ``mlx.core`` arrays; samplers only do
element-wise maths on them, so any layout (NCHW or NHWC) works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import mlx.core as mx
import numpy as np

from edgegen.errors import UnsupportedModelError, UsageError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


@dataclass(frozen=True)
class SchedulerConfig:
    """A diffusers ``scheduler/scheduler_config.json``, reduced to what our samplers read.

    ``None`` means "absent from the file": each sampler fills it with the default of the
    diffusers class it mirrors (DDIM spaces timesteps "leading" and clips x0, Euler spaces
    "linspace", LCM assumes SD's betas), exactly as diffusers' ``from_config`` does when it
    swaps scheduler classes. A sampler's own ``config`` has every field filled.
    """

    class_name: str | None = None  # `_class_name`: picks the default sampler
    num_train_timesteps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    beta_schedule: str | None = None
    trained_betas: tuple[float, ...] | None = None  # replaces the three above when given
    prediction_type: str = "epsilon"  # what the model predicts: noise, velocity or x0
    timestep_spacing: str | None = None
    steps_offset: int = 0  # SD 1.x uses 1 with "leading" spacing
    set_alpha_to_one: bool = True  # DDIM/LCM: alpha_cumprod "before" step 0 is 1
    clip_sample: bool | None = None
    clip_sample_range: float = 1.0
    use_karras_sigmas: bool = False  # Euler, DPM-Solver++
    final_sigmas_type: str = "zero"  # Euler, DPM-Solver++: last sigma 0 or sigma_min
    lower_order_final: bool = True  # DPM-Solver++: first-order last step below 15 steps
    euler_at_final: bool = False  # DPM-Solver++: always first-order last step
    rescale_betas_zero_snr: bool = False  # "Common Diffusion Noise Schedules ... Are Flawed"
    original_inference_steps: int = 50  # LCM: the distillation schedule length
    timestep_scaling: float = 10.0  # LCM: boundary-condition scaling of t

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchedulerConfig:
        """Read a diffusers scheduler config dict; unknown keys are ignored, unsupported values raise."""
        _reject_unsupported(d)
        trained = d.get("trained_betas")

        def opt(key: str, kind: type) -> Any:
            return None if d.get(key) is None else kind(d[key])

        config = cls(
            class_name=d.get("_class_name"),
            num_train_timesteps=int(d.get("num_train_timesteps", 1000)),
            beta_start=opt("beta_start", float),
            beta_end=opt("beta_end", float),
            beta_schedule=opt("beta_schedule", str),
            trained_betas=None if trained is None else tuple(float(b) for b in trained),
            prediction_type=str(d.get("prediction_type", "epsilon")),
            timestep_spacing=opt("timestep_spacing", str),
            steps_offset=int(d.get("steps_offset", 0)),
            set_alpha_to_one=bool(d.get("set_alpha_to_one", True)),
            clip_sample=opt("clip_sample", bool),
            clip_sample_range=float(d.get("clip_sample_range", 1.0)),
            use_karras_sigmas=bool(d.get("use_karras_sigmas") or False),
            final_sigmas_type=str(d.get("final_sigmas_type", "zero")),
            lower_order_final=bool(d.get("lower_order_final", True)),
            euler_at_final=bool(d.get("euler_at_final", False)),
            rescale_betas_zero_snr=bool(d.get("rescale_betas_zero_snr", False)),
            original_inference_steps=int(d.get("original_inference_steps", 50)),
            timestep_scaling=float(d.get("timestep_scaling", 10.0)),
        )
        config.validate()
        return config

    def with_defaults(self, **defaults: Any) -> SchedulerConfig:
        """A copy with the fields that are None (absent upstream) set from ``defaults``."""
        missing = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return replace(self, **missing)

    def validate(self) -> None:
        """Raise UnsupportedModelError naming the first value no sampler here implements."""
        for key, value, valid in (
            ("beta_schedule", self.beta_schedule, (*BETA_SCHEDULES, None)),
            ("prediction_type", self.prediction_type, PREDICTION_TYPES),
            ("timestep_spacing", self.timestep_spacing, (*TIMESTEP_SPACINGS, None)),
            ("final_sigmas_type", self.final_sigmas_type, FINAL_SIGMAS_TYPES),
        ):
            if value not in valid:
                names = ", ".join(v for v in valid if v)
                raise UnsupportedModelError(f"scheduler {key} {value!r} is not supported ({names})")
        if self.trained_betas is not None and len(self.trained_betas) != self.num_train_timesteps:
            raise UnsupportedModelError(
                f"scheduler trained_betas has {len(self.trained_betas)} values, "
                f"num_train_timesteps is {self.num_train_timesteps}"
            )


# Keys that change the schedule in ways none of our samplers implement; accepting them silently
# would give different images from the reference, so they are refused by name.
_UNSUPPORTED = {
    "interpolation_type": "linear",
    "timestep_type": "discrete",
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "thresholding": False,
    "sigma_min": None,
    "sigma_max": None,
}


def _reject_unsupported(d: dict[str, Any]) -> None:
    for key, default in _UNSUPPORTED.items():
        if d.get(key) not in (None, default):
            raise UnsupportedModelError(
                f"scheduler {key}={d[key]!r} is not supported (only {default!r})"
            )


# 1. Training noise schedule -------------------------------------------------------------------


def betas(config: SchedulerConfig) -> np.ndarray:
    """Per-timestep betas (float32), as diffusers builds them; ``config`` has defaults filled."""
    n = config.num_train_timesteps
    if config.trained_betas is not None:
        out = np.asarray(config.trained_betas, dtype=np.float32)
    elif config.beta_schedule == "linear":
        out = np.linspace(config.beta_start, config.beta_end, n).astype(np.float32)
    elif config.beta_schedule == "scaled_linear":
        root = np.linspace(config.beta_start**0.5, config.beta_end**0.5, n).astype(np.float32)
        out = root * root
    else:  # squaredcos_cap_v2: the Glide cosine schedule, each beta capped at 0.999
        t = np.arange(n + 1, dtype=np.float64) / n
        alpha_bar = np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        out = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.999).astype(np.float32)
    if config.rescale_betas_zero_snr:
        out = _rescale_zero_terminal_snr(out)
    return out


def _rescale_zero_terminal_snr(b: np.ndarray) -> np.ndarray:
    """Shift sqrt(alpha_cumprod) so the last timestep is pure noise (arXiv 2305.08891, Alg. 1)."""
    root = np.sqrt(np.cumprod(1.0 - b.astype(np.float64)))
    first, last = root[0], root[-1]
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return (1.0 - alphas).astype(np.float32)


def alphas_cumprod(config: SchedulerConfig, *, sigma_floor: bool = False) -> np.ndarray:
    """Cumulative product of (1 - beta), float32.

    With a zero-terminal-SNR schedule the last value is 0, an infinite sigma; the sigma-space
    samplers (``sigma_floor=True``) replace it with 2**-24 as diffusers does.
    """
    # float32 alphas, float64 running product: bit-identical to torch.cumprod on float32.
    ac = np.cumprod((np.float32(1.0) - betas(config)).astype(np.float64)).astype(np.float32)
    if sigma_floor and config.rescale_betas_zero_snr:
        ac[-1] = 2.0**-24
    return ac


def train_sigmas(ac: np.ndarray) -> np.ndarray:
    """Noise-to-signal ratio sqrt((1 - a) / a) of every training timestep, ascending in t."""
    return ((1 - ac) / ac) ** 0.5


# 2. Inference timesteps and sigmas ------------------------------------------------------------


def spaced_timesteps(spacing: str, num_steps: int, num_train: int, offset: int) -> np.ndarray:
    """Descending timesteps (float64, not rounded for "linspace") per arXiv 2305.08891 Table 2."""
    if spacing == "linspace":
        return np.linspace(0, num_train - 1, num_steps)[::-1].copy()
    if spacing == "leading":
        ratio = num_train // num_steps
        return (np.arange(num_steps) * ratio).round()[::-1] + offset
    ratio = num_train / num_steps  # trailing: may yield one extra step, as diffusers' does
    return np.round(np.arange(num_train, 0, -ratio)) - 1


def karras_sigmas(
    sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0
) -> np.ndarray:
    """Noise levels spaced uniformly in sigma**(1/rho), descending (Karras et al. 2022, eq. 5)."""
    ramp = np.linspace(0, 1, num_steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigma_to_t(sigmas: np.ndarray, log_train_sigmas: np.ndarray) -> np.ndarray:
    """Fractional timestep for each sigma, interpolating linearly in log-sigma."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    above = (log_sigma[None, :] - log_train_sigmas[:, None]) >= 0
    low = np.cumsum(above, axis=0).argmax(axis=0).clip(max=len(log_train_sigmas) - 2)
    lo, hi = log_train_sigmas[low], log_train_sigmas[low + 1]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return (1 - w) * low + w * (low + 1)


# 3. Model output conversion -------------------------------------------------------------------


def predict_x0_eps(
    model_output: mx.array, x: mx.array, alpha: float, sigma: float, prediction_type: str
) -> tuple[mx.array, mx.array]:
    """(x0, noise) from a model output, for x = alpha * x0 + sigma * noise (variance preserving).

    Both are returned because DDIM needs both; MLX never evaluates the one a caller drops.
    """
    if prediction_type == "epsilon":
        return (x - sigma * model_output) / alpha, model_output
    if prediction_type == "v_prediction":
        return alpha * x - sigma * model_output, alpha * model_output + sigma * x
    return model_output, (x - alpha * model_output) / sigma


def step_noise(shape: tuple[int, ...], key: mx.array | None) -> mx.array:
    """Gaussian noise for a stochastic step: from ``key`` when given, else MLX's global seed."""
    return mx.random.normal(shape, dtype=mx.float32, key=key)


# 4. The interface the pipeline is written against ---------------------------------------------


class Sampler(Protocol):
    """Mirrors a diffusers scheduler, addressed by step index instead of by timestep."""

    name: str
    config: SchedulerConfig
    timesteps: np.ndarray
    init_noise_sigma: float

    def set_timesteps(self, num_steps: int) -> None: ...
    def scale_model_input(self, x: mx.array, i: int) -> mx.array: ...
    def step(
        self, model_output: mx.array, i: int, x: mx.array, key: mx.array | None = None
    ) -> mx.array: ...
    def add_noise(self, x0: mx.array, noise: mx.array, i: int) -> mx.array: ...


# What diffusers' DDPM-derived schedulers assume when a key is absent; samplers override some.
COMMON_DEFAULTS = {
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "timestep_spacing": "linspace",
    "clip_sample": False,
}


class SamplerBase:
    """Argument checks and defaults common to all samplers (identity input scaling, unit noise)."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}  # the mirrored diffusers class's own defaults
    init_noise_sigma: float = 1.0

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config.with_defaults(**{**COMMON_DEFAULTS, **self.defaults})
        self.timesteps = np.zeros(0, dtype=np.int64)

    def _check_num_steps(self, num_steps: int) -> None:
        limit = self.config.num_train_timesteps
        integer = isinstance(num_steps, int | np.integer) and not isinstance(num_steps, bool)
        if not integer or not 1 <= num_steps <= limit:
            raise UsageError(f"{self.name}: steps {num_steps!r} must be an integer in 1..{limit}")

    def _check_index(self, i: int) -> None:
        if len(self.timesteps) == 0:
            raise UsageError(f"{self.name}: call set_timesteps(steps) before stepping")
        if not 0 <= i < len(self.timesteps):
            raise UsageError(f"{self.name}: step index {i} is outside 0..{len(self.timesteps) - 1}")

    def scale_model_input(self, x: mx.array, i: int) -> mx.array:
        self._check_index(i)
        return x
