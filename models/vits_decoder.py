"""HiFi-GAN generator: latent frames (C, T) -> waveform (T * prod(upsample_rates),)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from edgegen.models.vits_layers import Conv1d, ConvTranspose1d

LRELU_SLOPE = 0.1


def _leaky(x: mx.array, slope: float = LRELU_SLOPE) -> mx.array:
    return mx.maximum(x, slope * x)


class ResBlock1(nn.Module):
    """Pairs of (dilated conv, plain conv), each pre-activated and residual (HiFi-GAN V1)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = [Conv1d(channels, channels, kernel, d) for d in dilations]
        self.convs2 = [Conv1d(channels, channels, kernel, 1) for _ in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(_leaky(c1(_leaky(x))))
        return x


class ResBlock2(nn.Module):
    """Single dilated convs, each pre-activated and residual (HiFi-GAN V2/V3, Piper medium)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = [Conv1d(channels, channels, kernel, d) for d in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c in self.convs:
            x = x + c(_leaky(x))
        return x


class Generator(nn.Module):
    def __init__(
        self,
        in_channels: int,
        resblock: str,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        upsample_rates: tuple[int, ...],
        upsample_initial_channel: int,
        upsample_kernel_sizes: tuple[int, ...],
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = Conv1d(in_channels, upsample_initial_channel, 7)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = []
        self.resblocks = []
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            self.ups.append(ConvTranspose1d(ch, ch // 2, k, u, (k - u) // 2))
            ch //= 2
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, rk, tuple(rd)))
        self.conv_post = Conv1d(ch, 1, 7, bias=False)
        if gin_channels:
            self.cond = Conv1d(gin_channels, upsample_initial_channel, 1)

    def __call__(self, x: mx.array, g: mx.array | None = None) -> mx.array:
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        nk = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(_leaky(x))
            xs = self.resblocks[i * nk](x)
            for j in range(1, nk):
                xs = xs + self.resblocks[i * nk + j](x)
            x = xs * (1.0 / nk)
        # The last activation uses PyTorch's default slope (0.01), not LRELU_SLOPE.
        x = self.conv_post(_leaky(x, 0.01))
        return mx.tanh(x)[0]
