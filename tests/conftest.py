"""Shared test setup.

``import edgegen`` comes first on purpose: it loads the optimized BLAS before anything imports
``mlx.core`` (see edgegen/_blas.py).
"""

import edgegen  # noqa: F401  (must precede any mlx import)
import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model store, so no test sees the user's models."""
    monkeypatch.setenv("EDGEGEN_HOME", str(tmp_path_factory.mktemp("edgegen-home")))
