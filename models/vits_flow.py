"""The normalizing flow that maps prior samples to decoder latents (run in reverse only).

``flow.flows`` alternates ``ResidualCouplingLayer`` (even indices) and ``Flip`` (odd indices,
no weights); inference walks the list backwards.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from edgegen.models.fastmath import gated_tanh
from edgegen.models.vits_layers import Conv1d, NoParams


class WN(nn.Module):
    """WaveNet-style gated residual stack (non-causal, same padding)."""

    def __init__(
        self, hidden: int, kernel: int, dilation_rate: int, n_layers: int, gin_channels: int = 0
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_layers = [
            Conv1d(hidden, 2 * hidden, kernel, dilation_rate**i) for i in range(n_layers)
        ]
        self.res_skip_layers = [
            Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1) for i in range(n_layers)
        ]
        if gin_channels:
            self.cond_layer = Conv1d(gin_channels, 2 * hidden * n_layers, 1)

    def __call__(self, x: mx.array, g: mx.array | None = None) -> mx.array:
        h = self.hidden
        n = len(self.in_layers)
        g_all = self.cond_layer(g) if g is not None else None
        output = None
        for i in range(n):
            x_in = self.in_layers[i](x)
            if g_all is not None:
                x_in = x_in + g_all[i * 2 * h : (i + 1) * 2 * h]
            acts = gated_tanh(x_in[:h], x_in[h:])
            res_skip = self.res_skip_layers[i](acts)
            if i < n - 1:
                x = x + res_skip[:h]
                skip = res_skip[h:]
            else:
                skip = res_skip
            output = skip if output is None else output + skip
        return output


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half is shifted by a function of the first."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.half = channels // 2
        self.pre = Conv1d(self.half, hidden, 1)
        self.enc = WN(hidden, kernel, dilation_rate, n_layers, gin_channels)
        self.post = Conv1d(hidden, self.half, 1)

    def reverse(self, x: mx.array, g: mx.array | None = None) -> mx.array:
        x0, x1 = x[: self.half], x[self.half :]
        m = self.post(self.enc(self.pre(x0), g))
        return mx.concatenate([x0, x1 - m], axis=0)


class ResidualCouplingBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.flows = []
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels, hidden, kernel, dilation_rate, n_layers, gin_channels
                )
            )
            self.flows.append(NoParams())  # Flip

    def reverse(self, x: mx.array, g: mx.array | None = None) -> mx.array:
        for flow in reversed(self.flows):
            x = flow.reverse(x, g) if isinstance(flow, ResidualCouplingLayer) else x[::-1]
        return x
