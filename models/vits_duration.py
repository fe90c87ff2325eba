"""Stochastic duration predictor (VITS), inference direction only.

Noise ``z ~ N(0, noise_w²)`` of shape (2, T) runs backwards through the flows; the first
channel is the log-duration of each phoneme. With ``noise_w = 0`` the result is deterministic.

Upstream flow list: ``[ElementwiseAffine, ConvFlow, Flip, ConvFlow, Flip, ConvFlow, Flip,
ConvFlow, Flip]``. Inference reverses it and drops ``flows[1]`` (a "useless" vflow in the
original code), so exported Piper voices carry weights for flows 0, 3, 5 and 7 only.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from edgegen.models.fastmath import gelu
from edgegen.models.vits_layers import ChannelNorm, Conv1d, DepthwiseConv1d, NoParams

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


class DDSConv(nn.Module):
    """Dilated depth-separable conv stack; dilation grows as kernel**i."""

    def __init__(self, channels: int, kernel: int, n_layers: int) -> None:
        super().__init__()
        self.convs_sep = [DepthwiseConv1d(channels, kernel, kernel**i) for i in range(n_layers)]
        self.convs_1x1 = [Conv1d(channels, channels, 1) for _ in range(n_layers)]
        self.norms_1 = [ChannelNorm(channels) for _ in range(n_layers)]
        self.norms_2 = [ChannelNorm(channels) for _ in range(n_layers)]

    def __call__(self, x: mx.array, g: mx.array | None = None) -> mx.array:
        if g is not None:
            x = x + g
        for sep, pw, n1, n2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2, strict=True
        ):
            y = gelu(n1(sep(x)))
            y = gelu(n2(pw(y)))
            x = x + y
        return x


class ElementwiseAffine(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = mx.zeros((channels, 1))
        self.logs = mx.zeros((channels, 1))

    def reverse(self, x: mx.array, g: mx.array) -> mx.array:
        return (x - self.m) * mx.exp(-self.logs)


def _rq_spline_inverse(
    y: mx.array, uw: mx.array, uh: mx.array, ud: mx.array, bound: float
) -> mx.array:
    """Inverse rational-quadratic spline with linear tails; ``y`` (T,), params (T, bins)."""
    bins = uw.shape[-1]
    const = math.log(math.exp(1 - MIN_DERIVATIVE) - 1)
    pad = mx.full((ud.shape[0], 1), const)
    derivs = MIN_DERIVATIVE + nn.softplus(mx.concatenate([pad, ud, pad], axis=-1))

    def knots(unnorm: mx.array, min_size: float) -> tuple[mx.array, mx.array]:
        sizes = min_size + (1 - min_size * bins) * mx.softmax(unnorm, axis=-1)
        cum = mx.cumsum(sizes, axis=-1)
        cum = 2 * bound * cum - bound
        # Pin both ends exactly at the bounds, as upstream does.
        cum = mx.concatenate(
            [mx.full((cum.shape[0], 1), -bound), cum[:, :-1], mx.full((cum.shape[0], 1), bound)],
            axis=-1,
        )
        return cum, cum[:, 1:] - cum[:, :-1]

    cumw, widths = knots(uw, MIN_BIN_WIDTH)
    cumh, heights = knots(uh, MIN_BIN_HEIGHT)
    edges = mx.concatenate([cumh[:, :-1], cumh[:, -1:] + 1e-6], axis=-1)
    idx = (mx.sum(y[:, None] >= edges, axis=-1) - 1)[:, None]
    idx = mx.clip(idx, 0, bins - 1)

    def pick(a: mx.array) -> mx.array:
        return mx.take_along_axis(a, idx, axis=-1)[:, 0]

    in_cumw, in_w = pick(cumw[:, :-1]), pick(widths)
    in_cumh, in_h = pick(cumh[:, :-1]), pick(heights)
    in_delta = pick(heights / widths)
    d0, d1 = pick(derivs[:, :-1]), pick(derivs[:, 1:])

    dy = y - in_cumh
    a = dy * (d0 + d1 - 2 * in_delta) + in_h * (in_delta - d0)
    b = in_h * d0 - dy * (d0 + d1 - 2 * in_delta)
    c = -in_delta * dy
    root = (2 * c) / (-b - mx.sqrt(mx.maximum(b * b - 4 * a * c, 0.0)))
    inside = (y >= -bound) & (y <= bound)
    return mx.where(inside, root * in_w + in_cumw, y)


class ConvFlow(nn.Module):
    def __init__(
        self, filter_channels: int, kernel: int, n_layers: int, num_bins: int, tail_bound: float
    ) -> None:
        super().__init__()
        self.pre = Conv1d(1, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel, n_layers)
        self.proj = Conv1d(filter_channels, 3 * num_bins - 1, 1)
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.scale = 1.0 / math.sqrt(filter_channels)

    def reverse(self, x: mx.array, g: mx.array) -> mx.array:
        x0, x1 = x[:1], x[1:]
        h = self.proj(self.convs(self.pre(x0), g)).T  # (T, 3*bins - 1)
        nb = self.num_bins
        uw = h[:, :nb] * self.scale
        uh = h[:, nb : 2 * nb] * self.scale
        ud = h[:, 2 * nb :]
        x1 = _rq_spline_inverse(x1[0], uw, uh, ud, self.tail_bound)[None]
        return mx.concatenate([x0, x1], axis=0)


class StochasticDurationPredictor(nn.Module):
    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel: int,
        n_flows: int = 4,
        gin_channels: int = 0,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ) -> None:
        super().__init__()
        self.pre = Conv1d(in_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel, 3)
        self.proj = Conv1d(filter_channels, filter_channels, 1)
        # Index layout mirrors upstream so weight names match; see the module docstring.
        self.flows = [ElementwiseAffine(2), NoParams()]
        for _ in range(n_flows - 1):
            self.flows.append(NoParams())  # Flip
            self.flows.append(ConvFlow(filter_channels, kernel, 3, num_bins, tail_bound))
        if gin_channels:
            self.cond = Conv1d(gin_channels, filter_channels, 1)

    def log_durations(self, x: mx.array, noise: mx.array, g: mx.array | None = None) -> mx.array:
        """``x`` encoder output (C, T); ``noise`` (2, T) already scaled by noise_w."""
        x = self.pre(x)
        if g is not None:
            x = x + self.cond(g)
        x = self.proj(self.convs(x))
        # Reversed upstream order without flows[1]: Flip8, CF7, Flip6, CF5, Flip4, CF3, Flip2,
        # EA0. The trailing Flip8 has no list entry here (it carries no weights).
        z = noise[::-1]
        for flow in reversed(self.flows[2:]):
            z = flow.reverse(z, x) if isinstance(flow, ConvFlow) else z[::-1]
        z = self.flows[0].reverse(z, x)
        return z[0]
