"""Device and compute-precision policy: the one place that decides where and in what a model runs.

- :func:`on_gpu`: whether MLX's default device is an accelerator (Metal, CUDA).
- :func:`compute_dtype`: on a GPU a converted model computes in the precision it stores
  (fp16/bf16 halve memory traffic there); on the CPU always float32, because MLX's CPU fp16
  arithmetic measured ~20x slower than fp32 here.
- :func:`available_memory`: what a heavy job may allocate, for the checks made before it starts.
- :func:`vae_dtype`: the VAE rule. SDXL's VAE overflows in float16 into black images unless its
  config says it was fixed (``force_upcast: false``); such a VAE is stored and run in float32.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

HALF = (mx.float16, mx.bfloat16)


def on_gpu() -> bool:
    return mx.default_device() != mx.cpu


def compute_dtype(stored: mx.Dtype | None, gpu: bool | None = None) -> mx.Dtype:
    """What a model computes in by default (``stored``: its artifact's precision, None for a
    folder that records none)."""
    gpu = on_gpu() if gpu is None else gpu
    if gpu and stored is not None and stored in HALF:
        return stored
    return mx.float32


def vae_needs_float32(family: str, vae_config: dict[str, Any]) -> bool:
    """True for a VAE that half precision breaks: SDXL's, unless its config says it was fixed."""
    return family == "sdxl" and bool(vae_config.get("force_upcast", True))


def vae_dtype(
    dtype: mx.Dtype, family: str, vae_config: dict[str, Any], stored: str | None = None
) -> mx.Dtype:
    """The VAE's compute dtype for a model computing in ``dtype``: float32 where float16 breaks
    it (bfloat16 has float32's range), or where the artifact stored it in float32 on purpose."""
    if dtype in HALF and stored == "float32":
        return mx.float32
    if dtype == mx.float16 and vae_needs_float32(family, vae_config):
        return mx.float32
    return dtype


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now: Linux's MemAvailable (free plus
    reclaimable cache), else the physical memory; None when the system does not say."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
