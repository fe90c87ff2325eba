"""Shared test setup.

``import edgegen`` comes first on purpose: it loads the optimized BLAS before anything imports
``mlx.core`` (see edgegen/_blas.py).
"""

import pytest

import edgegen  # noqa: F401  (must precede any mlx import)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model store, so no test sees the user's models."""
    monkeypatch.setenv("EDGEGEN_HOME", str(tmp_path_factory.mktemp("edgegen-home")))


@pytest.fixture(scope="session")
def tiny_sd1(tmp_path_factory):
    """A tiny random SD1-style model in diffusers layout (vocab.json + merges.txt tokenizer)."""
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd1"), "sd1")


@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory):
    """A tiny random SD2-style model: linear projections, per-block heads, v-prediction."""
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd2"), "sd2")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    """A tiny random SDXL model: two text encoders (the second wider), size conditioning."""
    from tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))
