"""The project's own metadata reads without deprecation warnings (setuptools deprecated the
``project.license`` table; it stops working in February 2027)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_has_no_deprecated_metadata():
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    messages = [str(w.message).splitlines()[0] for w in caught]
    assert not [m for m in messages if "deprecat" in m.lower()], messages
    assert dist.metadata.license_expression == "Apache-2.0"
    # every folder of data files is a listed package, so setuptools ships it without warning
    for folder in ("converters/data", "edgegen/defaultmodel/weights/unet"):
        name = "edgegen." + folder.removeprefix("edgegen/").replace("/", ".")
        assert name in dist.packages, name
