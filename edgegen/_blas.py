"""Load an optimized BLAS before MLX is imported (Linux only).

mlx's Linux wheel links against the *reference* BLAS, which runs a 2048² sgemm at ~4 GFLOP/s.
MLX resolves ``cblas_*`` symbols at run time through the global symbol scope, so loading an
optimized library there first (``RTLD_GLOBAL``) makes MLX use it: OpenBLAS measured
159-171 GFLOP/s on the same machine, MKL 138. This module must run before ``mlx.core`` is
imported; ``edgegen/__init__.py`` calls :func:`load` for that reason.

``EDGEGEN_BLAS`` chooses: unset or ``auto`` (try OpenBLAS, then MKL), ``openblas``, ``mkl``,
``none`` (leave MLX alone), or an absolute path to a shared library.

OpenBLAS built with ``DYNAMIC_ARCH`` picks its kernels from the CPU model it recognises; older
releases (Debian's 0.3.21) do not know recent CPUs with AVX-512 (e.g. AMD Zen 4/5) and fall back
to the AVX2 ``Haswell`` kernels. When the CPU reports the AVX-512 subsets the ``SkylakeX``
kernels use, ``OPENBLAS_CORETYPE=SkylakeX`` is set before loading, unless the user set it
(on a Zen 5 machine the speech benchmark went from 1.07-1.53x to 0.99-1.00x of onnxruntime's
time with it; an Intel Sapphire Rapids machine already got SkylakeX, so nothing changed there).
:attr:`BlasInfo.core` names the kernels OpenBLAS chose.

The allocator setting that MLX's CPU backend needs for the UNet's large activations lives here
too (:func:`keep_freed_memory`): both are process-wide native settings. It is made when a UNet is
built (``converters/components.py``), not at import: processes that never run one (speech,
video rendering) keep glibc's defaults (a render measured ~5 % slower with the setting).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass

ENV_VAR = "EDGEGEN_BLAS"
CORETYPE_VAR = "OPENBLAS_CORETYPE"
# The AVX-512 subsets that Skylake-X introduced and OpenBLAS's SkylakeX kernels may use.
_SKYLAKEX_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"})

# Debian/Ubuntu multi-arch locations of the pthread OpenBLAS build, then generic names.
_OPENBLAS_CANDIDATES = [
    "/usr/lib/{arch}-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/{arch}-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    "libopenblas.so.0",
]


@dataclass(frozen=True)
class BlasInfo:
    """What :func:`load` did: ``name`` is ``openblas``, ``mkl``, ``custom``, ``reference`` or
    ``system`` (macOS Accelerate); ``path`` is the library loaded, if any."""

    name: str
    path: str | None
    reason: str
    core: str | None = None  # OpenBLAS's kernel set (``openblas_get_corename``), if known


_state: BlasInfo | None = None


def _try(path: str) -> str | None:
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    return path


def openblas_coretype(flags: set[str] | frozenset[str], env: Mapping[str, str]) -> str | None:
    """The ``OPENBLAS_CORETYPE`` to set for an x86-64 CPU with these ``/proc/cpuinfo`` flags,
    or ``None`` to leave OpenBLAS's own choice (the user's setting always wins)."""
    if CORETYPE_VAR in env:
        return None
    return "SkylakeX" if _SKYLAKEX_FLAGS <= flags else None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def _prefer_avx512(env: MutableMapping[str, str] = os.environ) -> None:
    if os.uname().machine != "x86_64":
        return
    core = openblas_coretype(_cpu_flags(), env)
    if core:
        env[CORETYPE_VAR] = core


def _corename(path: str) -> str | None:
    try:
        fn = ctypes.CDLL(path).openblas_get_corename
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    name = fn()
    return name.decode("ascii", "replace") if name else None


def _openblas() -> str | None:
    _prefer_avx512()
    arch = os.uname().machine
    for pattern in _OPENBLAS_CANDIDATES:
        found = _try(pattern.format(arch=arch))
        if found:
            return found
    return None


def _mkl() -> str | None:
    # The `mkl` wheel installs libmkl_rt.so.* into <prefix>/lib.
    roots = {sysconfig.get_config_var("LIBDIR") or "", os.path.join(sys.prefix, "lib")}
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "libmkl_rt.so*"))):
            found = _try(path)
            if found:
                return found
    return None


def load() -> BlasInfo:
    """Load the BLAS chosen by ``EDGEGEN_BLAS`` once per process and report what was loaded."""
    global _state
    if _state is not None:
        return _state
    if sys.platform != "linux":
        _state = BlasInfo("system", None, "MLX uses the platform BLAS (Accelerate on macOS)")
        return _state
    if "mlx.core" in sys.modules:
        _state = BlasInfo("reference", None, "mlx.core was imported before edgegen")
        return _state
    choice = os.environ.get(ENV_VAR, "auto").strip() or "auto"
    if choice == "none":
        _state = BlasInfo("reference", None, f"{ENV_VAR}=none")
    elif choice == "openblas":
        path = _openblas()
        _state = BlasInfo(
            "openblas" if path else "reference", path, "requested", path and _corename(path)
        )
    elif choice == "mkl":
        path = _mkl()
        _state = BlasInfo("mkl" if path else "reference", path, "requested")
    elif choice == "auto":
        path = _openblas()
        if path:
            _state = BlasInfo("openblas", path, "auto", _corename(path))
        else:
            path = _mkl()
            _state = BlasInfo(
                "mkl" if path else "reference",
                path,
                "auto" if path else "no OpenBLAS or MKL found; install libopenblas0-pthread",
            )
    else:
        path = _try(choice)
        _state = BlasInfo("custom" if path else "reference", path, f"{ENV_VAR}={choice}")
    return _state


# Measured here (DESIGN.md): a 2048² sgemm at 4.4 GFLOP/s with MLX's reference BLAS, 159-171
# with OpenBLAS.
SLOWDOWN = 35


def slow_blas_note(info: BlasInfo, on_cpu: bool) -> str | None:
    """One line for a run of MLX on the CPU with its reference BLAS, else ``None``.

    ``EDGEGEN_BLAS=none`` asks for exactly that, so it gets no note."""
    if info.name != "reference" or not on_cpu or info.reason == f"{ENV_VAR}=none":
        return None
    return (
        f"note: MLX runs on the CPU with its reference BLAS ({info.reason}): about {SLOWDOWN}x "
        "slower at matrix products; install OpenBLAS (apt-get install libopenblas0-pthread) "
        f"or set {ENV_VAR}=/path/to/libopenblas.so.0"
    )


_threads_lock = threading.Lock()
_threads_depth = 0
_threads_saved = 0


def _thread_controls() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    if _state is None or _state.path is None or _state.name not in {"openblas", "custom"}:
        return None
    try:
        lib = ctypes.CDLL(_state.path)
        return lib.openblas_get_num_threads, lib.openblas_set_num_threads
    except (OSError, AttributeError):
        return None


def set_threads(count: int) -> None:
    """Let OpenBLAS use ``count`` threads (Ray starts its workers with OMP_NUM_THREADS=1,
    and results can differ in the last bit between thread counts). Other BLAS: no effect."""
    controls = _thread_controls()
    if controls is not None:
        controls[1](max(1, count))


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Inside, OpenBLAS runs each call in the calling thread (its pool is restored after).

    For callers that run several MLX streams at once, one per core: there, OpenBLAS's own
    threads would only compete for the same cores. With any other BLAS this does nothing.
    """
    global _threads_depth, _threads_saved
    controls = _thread_controls()
    if controls is None:
        yield
        return
    get, set_ = controls
    with _threads_lock:
        if _threads_depth == 0:
            _threads_saved = get()
            set_(1)
        _threads_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0:
                set_(_threads_saved)


def keep_freed_memory() -> None:
    """Make glibc keep large freed blocks for reuse (process-wide; Linux only).

    glibc hands blocks over 32 MB straight back to the kernel, and MLX's CPU allocator keeps no
    cache of its own, so every large temporary (a 64×64×1280 UNet activation is 40 MB) is
    faulted in page by page again: an element-wise op on such a map ran 6× slower than on
    reused memory. Raising both thresholds to 1 GB keeps such blocks in the heap.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters from <malloc.h>
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)
