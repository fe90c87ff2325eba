"""Activations for the VITS speech model built from multiply-adds, for MLX's x86 CPU backend.

MLX's CPU build evaluates ``exp``, ``tanh``, ``sigmoid`` and ``erf`` one element at a time
through a slow library path: ~20 ns per element here, 80x a multiply. The speech model
applies them to ~40 M elements per minute of audio (the flow's gated tanh·sigmoid, the
duration predictor's GELUs, the text encoder's softmax), which cost more than a second. Here
they are polynomials, which ``mx.compile`` fuses into one loop that the compiler vectorises.

``exp`` is the textbook range reduction: ``x = n·ln2 + r`` with ``|r| <= ln2/2`` (n rounded),
``exp(r)`` by its Taylor series to degree 7 (remainder below 6e-9 relative), and ``2^n``
written into the float's exponent bits. The rest are defined through it. GELU is the UNet's
(``edgegen.models.attention.gelu``, exact erf form): the same function serves both.
"""

from __future__ import annotations

import math

import mlx.core as mx

_LOG2E = 1.0 / math.log(2.0)
# ln 2 split so that n * _LN2_HI is exact in float32 for |n| < 2^8.
_LN2_HI = 0.693145751953125
_LN2_LO = math.log(2.0) - _LN2_HI
# Past these, exp overflows / underflows float32's normal range; results are clamped there.
_EXP_MAX = 88.0
_EXP_MIN = -87.0
_ROUND = 12582912.0  # 1.5 * 2^23
_TAYLOR = [1.0 / math.factorial(k) for k in range(8)]


def _exp(x: mx.array) -> mx.array:
    x = mx.minimum(mx.maximum(x, _EXP_MIN), _EXP_MAX)
    # Round to nearest by adding and removing 1.5 * 2^23 (x * log2e is within ±2^22), as
    # mx.floor is a scalar library call in the generated loop.
    n = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _TAYLOR[7]
    for c in reversed(_TAYLOR[:7]):
        p = p * r + c
    scale = mx.view((n.astype(mx.int32) + 127) << 23, mx.float32)  # 2^n
    return p * scale


def _sigmoid(x: mx.array) -> mx.array:
    return 1.0 / (1.0 + _exp(-x))


def _tanh(x: mx.array) -> mx.array:
    # 1 - 2 / (1 + e^{2x}): absolute error ~1e-7 everywhere, exactly ±1 in the tails.
    return 1.0 - 2.0 / (1.0 + _exp(2.0 * x))


# Not ``shapeless``: MLX cannot infer the shape of the bit-cast view that way. A new length
# re-traces in well under a millisecond; the generated loop is cached by graph, not shape.
exp = mx.compile(_exp)
sigmoid = mx.compile(_sigmoid)
tanh = mx.compile(_tanh)
# The WaveNet gate of the flow: tanh(a) · sigmoid(b), one pass.
gated_tanh = mx.compile(lambda a, b: _tanh(a) * _sigmoid(b))
_shifted_exp = mx.compile(lambda x, m: _exp(x - m))


def softmax(x: mx.array, axis: int = -1) -> mx.array:
    e = _shifted_exp(x, mx.max(x, axis=axis, keepdims=True))
    return e / mx.sum(e, axis=axis, keepdims=True)
