"""How far two valid float32 computations of the same function may lie apart, and why.

Splitting a computation differently (time chunks, tiles, helper processes with single-threaded
BLAS, another CPU) keeps the function but changes the rounding: BLAS picks kernels and blocking
by matrix shape, thread count and processor, and promises no bit-for-bit equality across them.
Such paths are therefore compared relative to the signal's peak, with bounds derived from the
measured error, never bit for bit. Bit-for-bit comparisons stay where both sides run the same
operations on the same shapes in one process (a seed repeated, one tile covering the image).

Measured as a fraction of the peak (joe voice: ``test_speech_parallel.py``; random decoder:
``test_speech_layers.py``; Winograd: ``test_vae.py``):

| comparison | Zen / Haswell kernels | Nehalem | Sandybridge |
|---|---|---|---|
| decoder in 3 time chunks vs whole | 2.5e-5 | 0 | 0 |
| decoder, input moved by one ulp | 3.1e-5 | 2.7e-5 | 2.7e-5 |
| whole voice, helper processes vs one process | 7.1e-5 | 5.7e-5 | 0 |
| random decoder in 256-sample tiles vs untiled | 3.9e-6 | 0 | 0 |
| Winograd conv in bands vs one pass | 4.5e-7 | 0 | 0 |

(The AVX-512 machine of issue 11 measured the same figures with ``OPENBLAS_CORETYPE=Haswell``.)
A chunked decode moves the audio less than a one-ulp nudge of its input does, so its bound is
twice that nudge's effect, measured in the test itself. The whole voice runs ~60 layers where
rounding differences compound; its bound, :data:`VOICE_PEAK_BOUND`, is 2^-12 of the peak (3.4x
the largest measurement; at a 0.7 peak that is 5.7 steps of 16-bit audio, 72 dB below it).
Word timings come from integer frame counts and must stay exactly equal.
"""

from __future__ import annotations

import numpy as np

VOICE_PEAK_BOUND = 2.0**-12


def peak_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| as a fraction of want's peak (0 when both are zero)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    peak = np.abs(want).max()
    diff = np.abs(got - want).max()
    return float(diff / peak) if peak else float(diff)


def assert_peak_close(got: np.ndarray, want: np.ndarray, bound: float) -> None:
    """Fail when ``got`` differs from ``want`` by more than ``bound`` of want's peak."""
    error = peak_error(got, want)
    assert error <= bound, f"max difference {error:.3g} of the peak exceeds the bound {bound:.3g}"
