"""Every fast-math approximation of the models: exp, erf/GELU, tanh, sigmoid, SiLU, softmax.

Every function is fp32 in, fp32 out. Errors were measured against float64 references (numpy,
``math.erfc``) on the exact fp32 inputs: 8-12 M points (evenly spaced plus uniform random)
over [-100, 100] and [-8, 8], over [0, 6] for erfc_nonneg and over each stated range for exp;
``tests/test_fastmath.py`` checks each bound.

==================== ============================= =========================================
function             approximates                  measured max error (fp32)
==================== ============================= =========================================
exp32, exp           e^x (exp clamps to ±32)       relative 1.3e-5 on [-32, 0] (exp32 alone
                                                   1.04e-5), 3.9e-5 on [-10, 10], 4.7e-3 on
                                                   [0, 32] (at 32); exp is e^-32·(1 - 3.9e-6)
                                                   = 1.27e-14 below -32 and e^32·(1 - 4.6e-3)
                                                   above 32
softmax_numerator    e^s for s = x - max <= 0      relative 1.1e-5 on [-32, 0]; 1.27e-14
                                                   below -32
softmax              softmax over an axis          absolute 8.1e-6, relative 1.3e-5 where
                                                   p > 1e-6 (rows of 2-4096 scores, std
                                                   0.1-100); rows' sums are 1 to 1e-5
sigmoid              1 / (1 + e^-x)                absolute 1.31e-6 on R (1.27e-14 below -32)
tanh                 tanh x, from exp              absolute 2.47e-6 on R; absolute only: the
                                                   clamp rounds 2x to steps of 3.8e-6, so it
                                                   is 0 for |x| < 9.5e-7
gated_tanh           tanh a · sigmoid b            absolute 2.47e-6 on R²
tanh_rational        tanh x, Eigen's P/Q           absolute and relative 4.1e-7 on R
silu                 x · sigmoid x (rational tanh) absolute 3.1e-6 on R, at most
                                                   2.4e-7·max(1, |x|); -0.0 below -15.81
silu_exp             x · sigmoid x (exp)           absolute 1.3e-6 on [-100, 100], at most
                                                   9.8e-7·max(1, |x|); x·1.27e-14 below -32
erfc_nonneg          1 - erf z, z >= 0 (A&S)       absolute 2.1e-6 (near z = 0.07)
gelu                 x/2 · (1 + erf(x/√2))         absolute 5.2e-7 on R; 0 below -5.55
geglu                value · gelu(gate)            5.3e-7·|value|·max(1, |gate|)
==================== ============================= =========================================

Exact at 0: exp and softmax_numerator give 1, sigmoid 0.5, and tanh, tanh_rational, silu,
silu_exp and gelu 0. Large inputs saturate to finite values (table above) up to the point
where the branch-free clamps' ``x ± 32`` or gelu's z² overflows: |x| < 1e38 for exp,
softmax_numerator, sigmoid and silu_exp, 5e37 for tanh, 2.6e19 for gelu; ±inf gives NaN
(except tanh_rational, and silu at +inf), so a softmax row must not hold -inf (no masks).

Why: MLX's CPU build evaluates ``exp``, ``tanh``, ``sigmoid`` and ``erf`` through a slow
library path (~0.1 G elements/s here: softmax over a 4096-token self-attention took 4 s; ~20 ns
per element for the speech model's tanh and sigmoid). The functions below use only multiply,
add, divide, ``abs`` and ``clip``, which ``mx.compile`` fuses with their callers into
generated loops that the compiler vectorises. No ``mx.view`` bit-cast: it cannot be fused, so
the range-reduced exp the speech model used before (``2^n`` written into the exponent bits)
always split into three loops (seen in MLX's generated sources). MLX also splits a fused
chain deeper than about 11 operations, so a long activation still takes two or three loops;
they remain several times faster than the library calls. The flow's gate over a 192x480 map
measured 0.44-0.55 ms, against 0.63 ms with the bit-cast exp and ~4 ms with MLX's own tanh and
sigmoid (1.9 + 2.2 ms).

``exp32(x) = exp(x/32)^32``: a degree-7 polynomial in x/32 and five squarings. Callers clamp x
to [-32, 32] (:func:`clamp32`, or :func:`at_least` for softmax's non-positive shifts). Below
-32, exp is < 1.3e-14: as good as zero wherever it is used. The large relative error near
x = 32 only ever feeds a ``1 / (1 + e)`` (sigmoid, tanh), where it is invisible.

Two approximations exist twice, on purpose (see their docstrings): tanh (:func:`tanh` from exp,
for the speech model; :func:`tanh_rational`, Eigen's rational form, inside the UNet/VAE SiLU)
and SiLU (:func:`silu` from the rational tanh, in the UNet/VAE group norms; :func:`silu_exp`
from exp, which no model calls at present). Their results differ in the last bits, and tests
compare images and audio against diffusers and onnxruntime, so each model keeps the one it
was validated with.
"""

from __future__ import annotations

import mlx.core as mx

# --- exp and branch-free clamps ------------------------------------------------------------

_EXP_COEFFS = (
    1.0,
    0.9999999403953552,
    0.4999983012676239,
    0.16665375232696533,
    0.041617922484874725,
    0.008231459185481071,
    0.0012677599443122745,
    0.000119406460726168,
)


def exp32(x: mx.array) -> mx.array:
    """exp(x) for x in [-32, 32]; callers clamp (beyond it the result only needs to be tiny or
    huge, never exact). Not compiled: it is fused into its caller's compiled function."""
    r = x * (1.0 / 32.0)
    p = _EXP_COEFFS[-1]
    for c in _EXP_COEFFS[-2::-1]:
        p = p * r + c
    for _ in range(5):
        p = p * p
    return p


def at_least(x: mx.array, lo: float) -> mx.array:
    """max(x, lo) without a branch: a select on data-dependent signs would also mispredict
    half the time."""
    d = x - lo
    return 0.5 * (d + mx.abs(d)) + lo


def at_most(x: mx.array, hi: float) -> mx.array:
    """min(x, hi) without a branch."""
    d = hi - x
    return hi - 0.5 * (d + mx.abs(d))


def clamp32(x: mx.array) -> mx.array:
    """x clamped to [-32, 32], the range of :func:`exp32`."""
    return at_most(at_least(x, -32.0), 32.0)


def _exp(x: mx.array) -> mx.array:
    """exp(x), compiled: :func:`exp32` of x clamped to [-32, 32] (the VITS prior's scale).

    Above 32 callers don't go (log standard deviations of a VITS prior are small)."""
    return exp32(clamp32(x))


def _sigmoid(x: mx.array) -> mx.array:
    """1 / (1 + exp(-x)), compiled, exp from :func:`exp32` (the speech model's)."""
    return 1.0 / (1.0 + exp32(clamp32(-x)))


def _tanh(x: mx.array) -> mx.array:
    """tanh(x) = 1 - 2 / (1 + exp(2x)), compiled, exp from :func:`exp32`; past |2x| = 32 the
    result is ±1 to within 3e-14.

    The speech model's tanh (decoder output, flow gate). It differs from
    :func:`tanh_rational` (the UNet/VAE one) in the last bits; each model keeps the form its
    reference tests were set with."""
    return 1.0 - 2.0 / (1.0 + exp32(clamp32(2.0 * x)))


def _gated_tanh(a: mx.array, b: mx.array) -> mx.array:
    """tanh(a) · sigmoid(b) in one fused pass: the VITS flow's WaveNet gate."""
    return _tanh(a) * _sigmoid(b)


exp = mx.compile(_exp)
sigmoid = mx.compile(_sigmoid)
tanh = mx.compile(_tanh)
gated_tanh = mx.compile(_gated_tanh)

# --- Rational tanh and SiLU (UNet, VAE) -----------------------------------------------------

# Eigen's rational approximation of tanh on [-7.9, 7.9] (tanh is ±1 outside in fp32).
# MLX's CPU sigmoid is a scalar exp per element, ~10× slower than this all-multiply-add form
# once mx.compile fuses it into the group-norm pass.
_TANH_P = (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16,
)  # fmt: skip
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
_TANH_CLIP = 7.90531110763549805


def tanh_rational(x: mx.array) -> mx.array:
    """tanh(x) as Eigen's odd rational function x·P(x²)/Q(x²), x clipped to ±7.9053.

    Not compiled: fused into the caller (the UNet/VAE group norm's SiLU). Kept next to the
    exp-based :func:`tanh` rather than merged: the two round differently, and the UNet and
    VAE are compared with diffusers through this one."""
    x = mx.clip(x, -_TANH_CLIP, _TANH_CLIP)
    x2 = x * x
    p = _TANH_P[-1]
    for c in _TANH_P[-2::-1]:
        p = p * x2 + c
    q = _TANH_Q[-1]
    for c in _TANH_Q[-2::-1]:
        q = q * x2 + c
    return x * p / q


def silu(x: mx.array) -> mx.array:
    """x·sigmoid(x) as x·(1 + tanh(x/2))/2 with :func:`tanh_rational`; the UNet's and VAE's.

    Not compiled on its own: the group norm's compiled function fuses it into its pass. Exact
    at 0; for x below about -15.8 the tanh is clipped to -1 and the result is 0 (true value
    above -2.2e-6)."""
    return x * (0.5 + 0.5 * tanh_rational(0.5 * x))


@mx.compile
def silu_exp(x: mx.array) -> mx.array:
    """x · sigmoid(x) = x / (1 + exp(-x)), compiled, exp from :func:`exp32`; past x = 32
    exp's clamp changes nothing in fp32, below -32 the result is x·1.27e-14 instead of ~0.

    The exp-based SiLU that lived next to the UNet's attention. It rounds differently from
    :func:`silu` (which the group norms use), so the two are not interchangeable bit for bit;
    at the time of writing no model calls this one."""
    return x / (1.0 + exp32(clamp32(-x)))


# --- erf and GELU ---------------------------------------------------------------------------


def erfc_nonneg(z: mx.array) -> mx.array:
    """1 - erf(z) for z >= 0, Abramowitz & Stegun 7.1.26: q(t)·exp(-z²), t = 1/(1 + 0.3275911 z).

    Not compiled: fused into :func:`gelu`. A&S give 1.5e-7 for the formula; evaluated in
    fp32 it is 2.1e-6 near z = 0.07 (1.7e-6 of it from rounding in the polynomial and
    :func:`exp32`, the rest from ``at_most(z², 32)``, which moves z² by up to 9.5e-7). In
    :func:`gelu` it is multiplied by |x|, hence gelu's smaller error. Finite for z² < 3.4e38
    (|x| < 2.6e19 in gelu)."""
    t = 1.0 / (1.0 + 0.3275911 * z)
    q = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return q * exp32(-at_most(z * z, 32.0))


def _gelu(x: mx.array) -> mx.array:
    """x/2 · (1 + erf(x/√2)), the exact (erf) GELU as diffusers' GEGLU uses, compiled; erf
    from Abramowitz & Stegun 7.1.26. The UNet's GEGLU and the VITS duration predictor use it."""
    a = mx.abs(x)
    tail = erfc_nonneg(a * 0.7071067811865476)  # 1 - erf(|x|/√2)
    # gelu(x) = x/2 · (1 + sign(x)·erf(|x|/√2)) = (x + |x|·(1 - tail)) / 2: no select needed.
    return 0.5 * (x + a * (1.0 - tail))


def _geglu(value: mx.array, gate: mx.array) -> mx.array:
    """value · GELU(gate) in one fused pass (diffusers' GEGLU)."""
    return value * _gelu(gate)


gelu = mx.compile(_gelu)
geglu = mx.compile(_geglu)

# --- softmax ----------------------------------------------------------------------------------


def _softmax_numerator(shifted: mx.array) -> mx.array:
    """exp(s) for shifted scores s = x - max(x) <= 0, compiled.

    Below -32 a weight (< 1.3e-14 of the row's largest) is as good as zero, so clamping there
    only keeps the polynomial in range. The shift happens outside, in the callers (the UNet's
    blocked attention, :func:`softmax`): a broadcast input would push the fused loop onto
    MLX's slow strided path."""
    return exp32(at_least(shifted, -32.0))


softmax_numerator = mx.compile(_softmax_numerator)


def softmax(x: mx.array, axis: int = -1) -> mx.array:
    """softmax over ``axis``: :func:`softmax_numerator` of x - max, over its sum (VITS encoder)."""
    e = softmax_numerator(x - mx.max(x, axis=axis, keepdims=True))
    return e / mx.sum(e, axis=axis, keepdims=True)
