"""VITS conv building blocks against a direct NumPy reference, and the decoder's time tiling."""

import mlx.core as mx
import numpy as np
import pytest
from float32 import assert_peak_close
from mlx.utils import tree_map

from edgegen.models import vits_decoder
from edgegen.models.vits_decoder import Generator
from edgegen.models.vits_layers import Conv1d, ConvTranspose1d

rng = np.random.default_rng(0)


def ref_conv(x, w, b, d):
    """Same-padded dilated conv, channels-last x (T, Cin), w (Cout, K, Cin)."""
    c_out, k, _ = w.shape
    p = d * (k - 1) // 2
    xp = np.pad(x, [(p, p), (0, 0)])
    y = np.zeros((x.shape[0], c_out)) + (0 if b is None else b)
    for j in range(k):
        y += xp[j * d : j * d + x.shape[0]] @ w[:, j, :].T
    return y


def ref_conv_transpose(x, w, b, s, p):
    c_out, k, _ = w.shape
    t = x.shape[0]
    full = np.zeros(((t - 1) * s + k, c_out))
    for i in range(t):
        for j in range(k):
            full[i * s + j] += w[:, j, :] @ x[i]
    return full[p : p + (t - 1) * s - 2 * p + k] + b


def _set(module, **arrays):
    for name, value in arrays.items():
        setattr(module, name, mx.array(value.astype(np.float32)))


@pytest.mark.parametrize("k,d", [(1, 1), (3, 1), (5, 2), (7, 3)])
def test_conv_taps_matches_reference(k, d):
    conv = Conv1d(6, 5, k, d)
    w, b = rng.normal(size=(5, k, 6)), rng.normal(size=5)
    _set(conv, weight=w, bias=b)
    x = rng.normal(size=(40, 6))
    p = conv.half_width
    got = np.array(conv.taps(mx.array(x.astype(np.float32)), p, p))
    np.testing.assert_allclose(got, ref_conv(x, w, b, d), rtol=1e-4, atol=1e-4)
    # Channels-first call is the same conv.
    got_cf = np.array(conv(mx.array(x.T.astype(np.float32)))).T
    np.testing.assert_allclose(got_cf, ref_conv(x, w, b, d), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k,s", [(16, 8), (8, 4), (7, 3), (4, 4)])
def test_conv_transpose_and_its_spans_match_reference(k, s):
    p = (k - s) // 2
    up = ConvTranspose1d(6, 4, k, s, p)
    w, b = rng.normal(size=(4, k, 6)), rng.normal(size=4)
    _set(up, weight=w, bias=b)
    x = rng.normal(size=(11, 6))
    want = ref_conv_transpose(x, w, b, s, p)
    xm = mx.array(x.astype(np.float32))
    np.testing.assert_allclose(np.array(up(xm)), want, rtol=1e-4, atol=1e-4)
    weights = up.phase_weights()
    n = up.output_length(11)
    for a, e in [(0, 5), (3, n), (7, 19), (n - 1, n)]:
        np.testing.assert_allclose(np.array(up.span(xm, a, e, weights)), want[a:e], atol=1e-4)


def _reference_decoder(gen, z):
    """The decoder written plainly: whole signals, each block finished, then their mean."""
    pre, post = gen.conv_pre, gen.conv_post
    x = pre.taps(z, pre.half_width, pre.half_width)
    nk = gen.num_kernels
    for i, up in enumerate(gen.ups):
        u = up(mx.maximum(x, 0.1 * x))
        blocks = gen.resblocks[i * nk : (i + 1) * nk]
        x = sum(block(u) for block in blocks) / len(blocks)
    y = post.taps(mx.maximum(x, 0.01 * x), post.half_width, post.half_width)
    return np.tanh(np.array(y[:, 0]))


@pytest.mark.parametrize("resblock", ["1", "2"])
def test_decoder_tiles_equal_the_untiled_decoder(resblock, monkeypatch):
    gen = Generator(8, resblock, (3, 5), ((1, 3), (2, 4)), (4, 2), 16, (8, 4))
    mx.random.seed(0)
    params = tree_map(lambda a: mx.random.normal(a.shape) * 0.3, gen.parameters())
    gen.update(params)
    z = mx.random.normal((13, 8))
    monkeypatch.setattr(vits_decoder, "TILE_ELEMENTS", 1 << 30)
    whole = np.array(gen(z))
    monkeypatch.setattr(vits_decoder, "TILE_ELEMENTS", 1)  # 256-sample tiles (the minimum)
    assert whole.shape == (13 * 8,)
    z_long = mx.random.normal((90, 8))  # 720 samples: three tiles with edges and halos
    monkeypatch.setattr(vits_decoder, "TILE_ELEMENTS", 1 << 30)
    whole_long = np.array(gen(z_long))
    monkeypatch.setattr(vits_decoder, "TILE_ELEMENTS", 1)
    tiled_long = np.array(gen(z_long))
    # Tiles are GEMMs of other shapes: equal up to rounding (tests/float32.py; measured 3.9e-6
    # of the peak with Zen/Haswell kernels, 0 with Sandybridge/Nehalem).
    assert_peak_close(tiled_long, whole_long, 1e-5)
    assert np.array_equal(np.array(gen(z)), whole)  # one tile: the same operations, bit for bit
    # Blocks summed into one accumulator (Generator._stage) = each block finished, then meaned
    # (another summation order: 1.2e-6 to 2.5e-6 of the peak measured).
    assert_peak_close(whole_long, _reference_decoder(gen, z_long), 1e-5)


def test_resblock1_matches_reference():
    block = vits_decoder.ResBlock1(4, 3, (1, 3))
    ws = {}
    for name, convs in (("convs1", block.convs1), ("convs2", block.convs2)):
        for i, conv in enumerate(convs):
            w, b = rng.normal(size=(4, 3, 4)) * 0.5, rng.normal(size=4)
            _set(conv, weight=w, bias=b)
            ws[name, i] = (w, b, conv.dilation)
    x = rng.normal(size=(30, 4))

    def leaky(v):
        return np.maximum(v, 0.1 * v)

    want = x
    for i in range(2):
        w1, b1, d1 = ws["convs1", i]
        w2, b2, d2 = ws["convs2", i]
        want = want + ref_conv(leaky(ref_conv(leaky(want), w1, b1, d1)), w2, b2, d2)
    got = np.array(block(mx.array(x.astype(np.float32))))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_polynomial_activations_match_float64_references():
    from math import erf

    from edgegen.models import fastmath as act
    from edgegen.models.fastmath import gelu as gelu_fn

    x = np.concatenate([np.linspace(-100, 100, 20001), np.linspace(-4, 4, 8001), [0.0, 1e-8]])
    xm = mx.array(x.astype(np.float32))
    x = x.astype(np.float32).astype(np.float64)  # the exact inputs the float32 code sees
    # Bounds are what the fused polynomial exp gives (edgegen.models.fastmath), far below
    # what 16-bit audio can show; exp is only used for the prior's standard deviations.
    inside = (x >= -10) & (x <= 10)
    rel = np.abs(np.array(act.exp(xm))[inside] / np.exp(x[inside]) - 1)
    assert rel.max() < 5e-5
    assert np.abs(np.array(act.tanh(xm)) - np.tanh(x)).max() < 3e-6
    assert np.abs(np.array(act.sigmoid(xm)) - 1 / (1 + np.exp(-x))).max() < 2e-6
    gelu = 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    assert (np.abs(np.array(gelu_fn(xm)) - gelu) < 1e-6 * np.maximum(1, np.abs(x))).all()
    gate = np.array(act.gated_tanh(xm, xm[::-1]))
    assert np.abs(gate - np.tanh(x) / (1 + np.exp(-x[::-1]))).max() < 3e-6
    s = rng.standard_normal((2, 7, 9)) * 20
    e = np.exp(s - s.max(-1, keepdims=True))
    got = np.array(act.softmax(mx.array(s.astype(np.float32))))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), atol=1e-6)
