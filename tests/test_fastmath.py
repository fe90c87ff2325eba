"""edgegen.models.fastmath: each approximation within the error bound its docstring states.

References are float64 (numpy, math.erfc) evaluated on the exact float32 inputs the
approximations see. Each bound is the maximum measured on a denser grid (the module
docstring's table) with a ~25% margin, so a change to the numerics that loses accuracy fails
here, while rounding differences between CPUs' generated code (FMA or not) do not.
"""

import ast
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from edgegen.models import fastmath as fm

rng = np.random.default_rng(0)
_erfc = np.vectorize(math.erfc)


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    """Evenly spaced plus uniformly random float32 points of [lo, hi]."""
    return np.concatenate([np.linspace(lo, hi, n), rng.uniform(lo, hi, n)]).astype(np.float32)


# Dense where the errors peak, wide, tiny magnitudes, and log-spaced out to ±1e4.
_MAGNITUDES = np.logspace(-30, 4, 2001)
X32 = np.concatenate(
    [_grid(-8, 8, 400_001), _grid(-100, 100, 100_001), _MAGNITUDES, -_MAGNITUDES, [0.0]]
).astype(np.float32)
X = X32.astype(np.float64)


def _run(fn, *xs: np.ndarray) -> np.ndarray:
    return np.array(fn(*(mx.array(np.ascontiguousarray(x)) for x in xs))).astype(np.float64)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _gelu(x):
    return 0.5 * x * _erfc(-x / math.sqrt(2.0))  # erfc keeps the negative tail accurate


# --- error bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, lo, hi, bound",
    [
        (fm.exp, -32, 0, 1.6e-5),  # measured 1.26e-5
        (fm.exp, -10, 10, 5e-5),  # 3.92e-5
        (fm.exp, 0, 32, 6e-3),  # 4.62e-3 (at 32)
        (fm.exp32, -32, 0, 1.4e-5),  # 1.04e-5
        (fm.exp32, -10, 10, 5e-5),  # 3.76e-5
        (fm.softmax_numerator, -32, 0, 1.4e-5),  # 1.07e-5
    ],
)
def test_exp_relative_error(fn, lo, hi, bound):
    x32 = _grid(lo, hi, 500_001)
    x = x32.astype(np.float64)
    rel = np.abs(_run(fn, x32) / np.exp(x) - 1)
    assert rel.max() < bound


@pytest.mark.parametrize(
    "name, reference, bound",
    [
        ("sigmoid", _sigmoid, 1.6e-6),  # measured 1.31e-6
        ("tanh", np.tanh, 3e-6),  # 2.47e-6
        ("tanh_rational", np.tanh, 5e-7),  # 4.10e-7
        ("silu", lambda x: x * _sigmoid(x), 3.8e-6),  # 3.08e-6
        ("silu_exp", lambda x: x * _sigmoid(x), 1.6e-6),  # 1.27e-6
        ("gelu", _gelu, 6.5e-7),  # 5.15e-7
    ],
)
def test_absolute_error(name, reference, bound):
    err = np.abs(_run(getattr(fm, name), X32) - reference(X))
    assert err.max() < bound


def test_tanh_rational_relative_error():
    nz = X != 0
    got = _run(fm.tanh_rational, X32)[nz]
    assert (np.abs(got / np.tanh(X[nz]) - 1)).max() < 5e-7  # measured 4.0e-7


@pytest.mark.parametrize("name, bound", [("silu", 3e-7), ("silu_exp", 1.2e-6)])  # 2.4e-7, 9.8e-7
def test_silu_error_relative_to_max_1_x(name, bound):
    err = np.abs(_run(getattr(fm, name), X32) - X * _sigmoid(X))
    assert (err / np.maximum(1.0, np.abs(X))).max() < bound


def test_erfc_nonneg_absolute_error():
    z32 = np.concatenate([_grid(0, 1, 500_001), _grid(0, 8, 200_001)])
    err = np.abs(_run(fm.erfc_nonneg, z32) - _erfc(z32.astype(np.float64)))
    assert err.max() < 2.6e-6  # measured 2.11e-6, near z = 0.07


def test_gated_tanh_absolute_error():
    b32 = X32[::-1]
    b = b32.astype(np.float64)
    err = np.abs(_run(fm.gated_tanh, X32, b32) - np.tanh(X) * _sigmoid(b))
    assert err.max() < 3e-6  # measured 2.47e-6


def test_geglu_error():
    value32 = rng.standard_normal(X32.size).astype(np.float32)
    value = value32.astype(np.float64)
    err = np.abs(_run(fm.geglu, value32, X32) - value * _gelu(X))
    assert (err / (np.abs(value) * np.maximum(1.0, np.abs(X)) + 1e-30)).max() < 6.5e-7  # 5.3e-7


def test_softmax_error():
    worst_abs = worst_rel = worst_sum = 0.0
    for scale in (0.1, 1, 5, 20, 100):
        for length in (2, 7, 77, 1000, 4096):
            s32 = (rng.standard_normal((64, length)) * scale).astype(np.float32)
            s = s32.astype(np.float64)
            e = np.exp(s - s.max(-1, keepdims=True))
            want = e / e.sum(-1, keepdims=True)
            got = _run(fm.softmax, s32)
            err = np.abs(got - want)
            big = want > 1e-6
            worst_abs = max(worst_abs, err.max())
            worst_rel = max(worst_rel, (err[big] / want[big]).max())
            worst_sum = max(worst_sum, np.abs(got.sum(-1) - 1).max())
    assert worst_abs < 1.2e-5  # measured 8.1e-6 (4096-long rows)
    assert worst_rel < 2e-5  # 1.3e-5; at most twice softmax_numerator's relative error
    assert worst_sum < 1.2e-5  # 9.2e-6


def test_softmax_along_another_axis():
    s = mx.array(rng.standard_normal((5, 3, 4)).astype(np.float32) * 3)
    got = np.array(fm.softmax(s, axis=0))
    want = np.array(fm.softmax(s.transpose(1, 2, 0))).transpose(2, 0, 1)
    np.testing.assert_array_equal(got, want)


# --- edge behaviour ---------------------------------------------------------------------------


def test_exact_at_zero():
    zero = mx.array(np.zeros(3, np.float32))
    assert (np.array(fm.exp(zero)) == 1).all()
    assert (np.array(fm.exp32(zero)) == 1).all()
    assert (np.array(fm.softmax_numerator(zero)) == 1).all()
    assert (np.array(fm.sigmoid(zero)) == 0.5).all()
    for name in ("tanh", "tanh_rational", "silu", "silu_exp", "gelu"):
        assert (np.array(getattr(fm, name)(zero)) == 0).all(), name
    assert (np.array(fm.gated_tanh(zero, zero)) == 0).all()
    # A&S 7.1.26's coefficients sum to 1 (erfc(0) = 1) up to float32 rounding.
    assert abs(fm.erfc_nonneg(mx.array(0.0)).item() - 1) < 1e-7


def _ladder(top: float) -> np.ndarray:
    """Magnitudes from just past saturation up to ``top``, both signs."""
    m = np.logspace(np.log10(40.0), np.log10(top), 60).astype(np.float32)
    return np.concatenate([m, -m])


E_MINUS_32 = math.exp(-32)


def test_exp_family_saturates_finite():
    x = _ladder(9e37)  # the docstring: finite for |x| < 1e38
    pos, neg = x > 0, x < 0
    for fn in (fm.exp, fm.sigmoid):
        y = np.array(fn(mx.array(x)))
        assert np.isfinite(y).all()
    e = np.array(fm.exp(mx.array(x)))
    assert (e[pos] == e[pos][0]).all() and abs(e[pos][0] / math.exp(32) - 1) < 6e-3
    assert np.allclose(e[neg], E_MINUS_32, rtol=1e-5)
    s = np.array(fm.sigmoid(mx.array(x)))
    assert (s[pos] == 1).all() and (s[neg] > 0).all() and (s[neg] < 1.3e-14).all()
    n = np.array(fm.softmax_numerator(mx.array(x[neg])))
    assert np.allclose(n, E_MINUS_32, rtol=1e-5)


def test_tanh_saturates_to_plus_minus_one():
    x = _ladder(4e37)  # the exp-based tanh is finite for |x| < 5e37
    for name in ("tanh", "tanh_rational"):
        y = np.array(getattr(fm, name)(mx.array(x)))
        np.testing.assert_array_equal(y, np.sign(x), err_msg=name)
    big = np.array([np.inf, -np.inf, 3.4e38, -3.4e38], np.float32)
    np.testing.assert_array_equal(np.array(fm.tanh_rational(mx.array(big))), np.sign(big))
    gate = np.array(fm.gated_tanh(mx.array(x), mx.array(np.abs(x))))
    np.testing.assert_array_equal(gate, np.sign(x))


def test_silu_and_gelu_saturate():
    x = _ladder(1e19)  # gelu is finite for |x| < 2.6e19
    pos, neg = x > 0, x < 0
    for name in ("silu", "gelu"):
        y = np.array(getattr(fm, name)(mx.array(x)))
        assert (y[pos] == x[pos]).all() and (y[neg] == 0).all(), name
    y = np.array(fm.silu_exp(mx.array(x)))
    assert (y[pos] == x[pos]).all()
    # Below -32 silu_exp is x·e^-32 rather than ~0: tiny next to x, never NaN.
    assert (y[neg] <= 0).all() and (np.abs(y[neg]) <= 1.3e-14 * np.abs(x[neg])).all()
    huge = np.array([1e38, -1e38, 3.4e38, -3.4e38], np.float32)
    np.testing.assert_array_equal(np.array(fm.silu(mx.array(huge))), np.maximum(huge, 0))
    assert np.isfinite(np.array(fm.silu_exp(mx.array(huge[:2])))).all()


def test_softmax_of_extreme_rows():
    rows = np.array([[0.0, -1e30, 1e30, 0.0], [5.0, 5.0, 5.0, 5.0], [-1e4, 0.0, -1e4, -40.0]])
    got = np.array(fm.softmax(mx.array(rows.astype(np.float32))))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[1], 0.25)
    assert got[0, 2] == 1 and (got[0, [0, 1, 3]] < 1.3e-14).all()
    assert abs(got[2, 1] - 1) < 1e-13 and (got[2, [0, 2, 3]] < 1.3e-14).all()


def test_no_other_model_module_defines_an_approximation():
    """The models import these from fastmath; a second definition would drift from the
    bounds tested here."""
    names = {n for n in vars(fm) if not n.startswith("__") and n not in ("annotations", "mx")}
    stems = {n.lstrip("_") for n in names}
    for path in sorted(Path(fm.__file__).parent.glob("*.py")):
        if path.name == "fastmath.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined = {node.name}
            elif isinstance(node, ast.Assign):
                defined = {t.id for t in node.targets if isinstance(t, ast.Name)}
            else:
                continue
            clash = {d for d in defined if d.lstrip("_") in stems}
            assert not clash, f"{path.name} defines {clash}: import it from fastmath"
