"""Convolution building blocks for VITS, written for batch-1 channels-first (C, T) arrays.

Why not ``mx.conv1d``: on the CPU backend MLX runs dilated and transposed 1-D convolutions
through a naive loop (measured here: 0.7 GFLOP/s for a dilated 32-channel conv, against 19+ for
the same conv as one matrix product). Every VITS convolution is therefore built from GEMMs:

* ``Conv1d``: channels-first, ``W (C_out, K*C_in) @ cols (K*C_in, T)`` (im2col along time), or
  for narrow layers one ``W_k @ shifted slice`` per tap. Channels-first keeps each tap a
  contiguous time slice and gives BLAS a long N dimension, which measured ~2× faster than
  the channels-last form for the decoder's 32- and 64-channel layers.
* ``ConvTranspose1d``: one GEMM producing every tap's contribution, then an overlap-add of
  ``K / stride`` shifted blocks (polyphase form) — no zero-stuffed input.

Weights use MLX's layout, ``(C_out, K, C_in)``, for both kinds (the converter transposes).
Batch is always 1: speech is synthesized one sentence at a time, so there is no padding and no
sequence mask anywhere (a mask of ones is an identity).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class Conv1d(nn.Module):
    """Same-padded 1-D convolution over (C_in, T) -> (C_out, T)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, dilation: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = mx.zeros((c_out, kernel, c_in))
        if bias:
            self.bias = mx.zeros((c_out,))
        self.dilation = dilation

    def __call__(self, x: mx.array) -> mx.array:
        c_out, k, c_in = self.weight.shape
        if k == 1:
            y = self.weight.reshape(c_out, c_in) @ x
        else:
            d = self.dilation
            pad = d * (k - 1) // 2
            t = x.shape[1]
            xp = mx.pad(x, [(0, 0), (pad, pad)])
            if c_in <= 64:
                # Narrow layers (the decoder's last stages, 10^5 samples long): one GEMM per
                # tap reads each shifted slice in place; building the K-times larger im2col
                # matrix cost more than the GEMMs (A/B on the whole decoder, 3 runs each).
                y = None
                for j in range(k):
                    part = self.weight[:, j, :] @ xp[:, j * d : j * d + t]
                    y = part if y is None else y + part
            else:
                cols = mx.concatenate([xp[:, j * d : j * d + t] for j in range(k)], axis=0)
                y = self.weight.reshape(c_out, k * c_in) @ cols
        if "bias" in self:
            y = y + self.bias[:, None]
        return y


class DepthwiseConv1d(nn.Module):
    """Per-channel (groups = channels) same-padded convolution, as shifted multiply-adds."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.weight = mx.zeros((channels, kernel, 1))
        self.bias = mx.zeros((channels,))
        self.dilation = dilation

    def __call__(self, x: mx.array) -> mx.array:
        k = self.weight.shape[1]
        d = self.dilation
        pad = d * (k - 1) // 2
        t = x.shape[1]
        xp = mx.pad(x, [(0, 0), (pad, pad)])
        w = self.weight[:, :, 0]
        y = self.bias[:, None]
        for j in range(k):
            y = y + w[:, j : j + 1] * xp[:, j * d : j * d + t]
        return y


class ConvTranspose1d(nn.Module):
    """Transposed convolution (PyTorch semantics: stride, padding) over (C_in, T).

    ``out[o, t*s + k - p] += sum_i W[o, k, i] * x[i, t]``; output length ``(T-1)*s - 2p + K``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.weight = mx.zeros((c_out, kernel, c_in))
        self.bias = mx.zeros((c_out,))
        self.stride = stride
        self.padding = padding

    def __call__(self, x: mx.array) -> mx.array:
        c_out, k, c_in = self.weight.shape
        s, p = self.stride, self.padding
        t = x.shape[1]
        n = -(-k // s)  # taps span n output blocks of `s` samples
        w = self.weight
        if n * s != k:
            w = mx.pad(w, [(0, 0), (0, n * s - k), (0, 0)])
        # (n, s, C_out) rows: contribution of every input frame to each tap.
        w = w.transpose(1, 0, 2).reshape(n * s * c_out, c_in)
        contrib = (w @ x).reshape(n, s, c_out, t)
        blocks = None
        for m in range(n):
            part = mx.pad(contrib[m], [(0, 0), (0, 0), (m, n - 1 - m)])
            blocks = part if blocks is None else blocks + part
        # (s, C_out, T+n-1) -> (C_out, (T+n-1)*s): interleave the phases along time.
        y = blocks.transpose(1, 2, 0).reshape(c_out, (t + n - 1) * s)
        length = (t - 1) * s - 2 * p + k
        return y[:, p : p + length] + self.bias[:, None]


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of a (C, T) array (VITS ``modules.LayerNorm``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = mx.ones((channels,))
        self.beta = mx.zeros((channels,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.layer_norm(x.T, self.gamma, self.beta, self.eps).T


class NoParams(nn.Module):
    """Placeholder at a list index whose upstream module has no inference weights (Flip)."""
