"""HiFi-GAN generator: latent frames (T, C) -> waveform (T * prod(upsample_rates),).

Runs channels-last ``(T, C)`` (see ``vits_layers``). Each stage (upsampling, then the mean of
its residual blocks; on the last stage also the output conv) runs tile by tile along time: a
sentence's 32-channel stage is ~20 MB per activation, and each of its ~30 per-tap GEMMs and
element-wise passes would stream that through memory; a tile of ``TILE_ELEMENTS`` stays in
cache for the whole stack, and only each stage's output is ever whole. Each tile computes
``halo`` extra samples of context, so the result equals the untiled one up to float32 rounding
(the same sums; BLAS may order them differently for a tile's shape).

A stage's residual blocks all end in a residual conv, and the stage keeps their mean: so the
stage sums each block's last conv (weights / n) into one accumulator that starts as the mean
of those convs' inputs and biases (``_ResBlock.span_open``), instead of finishing each block
and averaging (10% less decoder time).

Parallelism is not done here: the speech pipeline decodes sentences (or, for the last one,
time chunks of it, see :attr:`Generator.context_frames`) in several processes at once
(``edgegen.speech.parallel``).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from edgegen.models.fastmath import tanh
from edgegen.models.vits_layers import Conv1d, ConvTranspose1d

LRELU_SLOPE = 0.1
# Time-tile size in elements (samples x channels): 1 MB of float32, about one core's L2. A/B on
# the joe decoder: 2^18 and 2^19 took ~25% less CPU than untiled; smaller tiles add per-op cost.
# Re-measured with two speech processes: 2^17 and 2^19 were 4-8% slower than 2^18.
TILE_ELEMENTS = 1 << 18
# Fused into one pass each (instead of a multiply and a maximum).
_leaky = mx.compile(lambda x: mx.maximum(x, LRELU_SLOPE * x))
# The last activation uses PyTorch's default slope (0.01), not LRELU_SLOPE.
_leaky_post = mx.compile(lambda x: mx.maximum(x, 0.01 * x))
# The mean of a stage's residual blocks' last inputs plus their mean bias, in one pass.
_mean = mx.compile(lambda bias, *ys: sum(ys[1:], ys[0]) * (1.0 / len(ys)) + bias)


class _ResBlock(nn.Module):
    """A chain of residual units; each unit is convs, each pre-activated, plus the unit input."""

    def units(self) -> list[list[Conv1d]]:
        raise NotImplementedError

    @property
    def halo(self) -> int:
        """Samples of context each side that the whole block needs."""
        return sum(c.half_width for unit in self.units() for c in unit)

    def span(
        self, x: mx.array, start: int, end: int, total: int, x_act: mx.array | None = None
    ) -> tuple[mx.array, int, int]:
        """Run on ``x`` = samples [start, end) of a ``total``-sample signal (T, C); returns the
        exactly computed part and its range: each conv shrinks the range by its half width,
        except at the signal's true ends, where it zero-pads as the untiled conv does.
        ``x_act``, if given, is the activated ``x`` (the blocks of a stage share it)."""
        for n, unit in enumerate(self.units()):
            x, start, end = self._unit(unit, x, start, end, total, x_act if n == 0 else None)
        return x, start, end

    def span_open(
        self, x: mx.array, start: int, end: int, total: int, x_act: mx.array | None = None
    ) -> tuple[mx.array, int, mx.array, int, Conv1d]:
        """:meth:`span` up to, not including, the last conv: returns that conv's residual (the
        last unit's input) and its start, its activated input and that input's start, and
        the conv. A stage sums its blocks' last convs into one accumulator (see
        ``Generator._stage``) instead of finishing each block apart."""
        *head, last = self.units()
        for n, unit in enumerate(head):
            x, start, end = self._unit(unit, x, start, end, total, x_act if n == 0 else None)
        shared = x_act if not head else None  # the last unit's input is the block's input
        *first, final = last
        h, s, _ = self._unit(first, x, start, end, total, shared, residual=False)
        act = shared if shared is not None and not first else _leaky(h)
        return x, start, act, s, final

    @staticmethod
    def _unit(
        unit: list[Conv1d],
        x: mx.array,
        start: int,
        end: int,
        total: int,
        x_act: mx.array | None,
        residual: bool = True,
    ) -> tuple[mx.array, int, int]:
        """The convs of ``unit`` in turn, each pre-activated (the first with ``x_act`` if
        given); the unit's input ``x`` is added to the last one's output if ``residual``."""
        h, s, e = x, start, end
        for i, conv in enumerate(unit):
            p = conv.half_width
            s2, e2 = (s if s == 0 else s + p), (e if e == total else e - p)
            last = i == len(unit) - 1
            res = x[s2 - start : e2 - start] if residual and last else None
            act = x_act if i == 0 and x_act is not None else _leaky(h)
            h = conv.taps(act, p if s == 0 else 0, p if e == total else 0, residual=res)
            s, e = s2, e2
        return h, s, e

    def __call__(self, x: mx.array) -> mx.array:
        """Channels-last (T, C) -> (T, C), untiled."""
        return self.span(x, 0, x.shape[0], x.shape[0])[0]


class ResBlock1(_ResBlock):
    """Pairs of (dilated conv, plain conv), each pre-activated and residual (HiFi-GAN V1)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = [Conv1d(channels, channels, kernel, d) for d in dilations]
        self.convs2 = [Conv1d(channels, channels, kernel, 1) for _ in dilations]

    def units(self) -> list[list[Conv1d]]:
        return [[c1, c2] for c1, c2 in zip(self.convs1, self.convs2, strict=True)]


class ResBlock2(_ResBlock):
    """Single dilated convs, each pre-activated and residual (HiFi-GAN V2/V3, Piper medium)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = [Conv1d(channels, channels, kernel, d) for d in dilations]

    def units(self) -> list[list[Conv1d]]:
        return [[c] for c in self.convs]


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
        """Latent frames, channels-last (T, C) -> waveform (T * hop,), lazy."""
        pre = self.conv_pre
        x = pre.taps(x, pre.half_width, pre.half_width)
        if g is not None:
            x = x + self.cond(g).T
        nk = self.num_kernels
        for i, up in enumerate(self.ups):
            blocks = self.resblocks[i * nk : (i + 1) * nk]
            post = self.conv_post if i == len(self.ups) - 1 else None
            x = self._stage(x, up, blocks, post)
        return x[:, 0]

    @property
    def context_frames(self) -> int:
        """Input frames each side that an output sample can depend on (an upper bound).

        Decoding frames ``[a - c, b + c)`` and keeping the samples of ``[a, b)`` gives what
        decoding the whole input would give there, so a long input can be decoded in chunks.
        Walks back from the output: each stage's residual-block (and output conv) context in
        its own samples, then through the upsampling to its input frames.
        """
        nk = self.num_kernels
        samples = self.conv_post.half_width
        for i in reversed(range(len(self.ups))):
            up = self.ups[i]
            blocks = self.resblocks[i * nk : (i + 1) * nk]
            samples += max(b.halo for b in blocks)
            stride, kernel = up.stride, up.weight.shape[1]
            samples = math.ceil(samples / stride) + math.ceil(kernel / stride) + 1
        return samples + self.conv_pre.half_width

    def _stage(
        self,
        x: mx.array,
        up: ConvTranspose1d,
        blocks: list[_ResBlock],
        post: Conv1d | None,
    ) -> mx.array:
        """Upsample, then the mean of the residual blocks (then ``post`` and tanh, on the last
        stage), one time tile at a time: only the stage's output is ever whole in memory."""
        total = up.output_length(x.shape[0])
        c_out = up.weight.shape[0]
        weights = up.phase_weights()
        halo = max(b.halo for b in blocks)
        extra = post.half_width if post is not None else 0
        tile = max(TILE_ELEMENTS // c_out, 256)
        bias = sum(block.units()[-1][-1].bias for block in blocks) * (1.0 / len(blocks))
        tiles = []
        for a in range(0, total, tile):
            b = min(a + tile, total)
            a2, b2 = max(a - extra, 0), min(b + extra, total)  # what ``post`` reads
            start, end = max(a2 - halo, 0), min(b2 + halo, total)
            u = up.span(x, start, end, weights, activation=_leaky)
            u_act = _leaky(u)
            # The mean of the blocks, each ending in a residual conv: the mean of the convs'
            # inputs and biases, then every block's last conv (weights / n) added into it.
            # Saves each block's residual pass and the separate mean over their outputs.
            opens = [block.span_open(u, start, end, total, u_act) for block in blocks]
            y = _mean(bias, *(r[a2 - rs : b2 - rs] for r, rs, _, _, _ in opens))
            for _, _, act, act_start, conv in opens:
                y = conv.accumulate(y, act, act_start, a2, b2, total, 1.0 / len(blocks))
            if post is not None:
                pl = post.half_width if a2 == 0 else 0
                pr = post.half_width if b2 == total else 0
                y = tanh(post.taps(_leaky_post(y), pl, pr))
            mx.async_eval(y)
            tiles.append(y)
        return tiles[0] if len(tiles) == 1 else mx.concatenate(tiles, axis=0)
