"""Activations for the VITS speech model, built on :mod:`edgegen.models.fastmath`'s exp.

MLX's CPU build evaluates ``exp``, ``tanh`` and ``sigmoid`` one element at a time through a
slow library path: ~20 ns per element here. The speech model applies them to ~40 M elements
per minute of audio (the flow's gated tanh·sigmoid, the text encoder's softmax, the decoder's
output), so each is written with the branch-free ``exp32``, which ``mx.compile`` fuses with
its caller (see :mod:`edgegen.models.fastmath`). The flow's gate over a 192x480 map measured
0.44-0.55 ms, against 0.63 ms with the earlier bit-cast exp and ~4 ms with MLX's own tanh and
sigmoid (1.9 + 2.2 ms). Accuracy against float64: tanh within 1.8e-6, sigmoid 1e-6, far below
what 16-bit audio can show. GELU is the UNet's (``edgegen.models.attention.gelu``, exact erf form).
"""

from __future__ import annotations

import mlx.core as mx

from edgegen.models.fastmath import at_least, clamp32, exp32


def _exp(x: mx.array) -> mx.array:
    # Below -32, exp is < 1.3e-14: as good as zero wherever it is used here. Above 32 callers
    # don't go (log standard deviations of a VITS prior are small).
    return exp32(clamp32(x))


def _sigmoid(x: mx.array) -> mx.array:
    return 1.0 / (1.0 + exp32(clamp32(-x)))


def _tanh(x: mx.array) -> mx.array:
    # 1 - 2 / (1 + e^{2x}); past |2x| = 32 the result is ±1 to within 3e-14.
    return 1.0 - 2.0 / (1.0 + exp32(clamp32(2.0 * x)))


exp = mx.compile(_exp)
sigmoid = mx.compile(_sigmoid)
tanh = mx.compile(_tanh)
# The WaveNet gate of the flow: tanh(a) · sigmoid(b), one pass.
gated_tanh = mx.compile(lambda a, b: _tanh(a) * _sigmoid(b))
# exp(s - max) with s - max <= 0. The shift happens outside: a broadcast input would push the
# fused loop onto MLX's slow strided path.
_softmax_numerator = mx.compile(lambda shifted: exp32(at_least(shifted, -32.0)))


def softmax(x: mx.array, axis: int = -1) -> mx.array:
    e = _softmax_numerator(x - mx.max(x, axis=axis, keepdims=True))
    return e / mx.sum(e, axis=axis, keepdims=True)
