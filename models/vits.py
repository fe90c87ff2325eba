"""VITS (Piper's speech synthesizer) on MLX: text encoder, duration predictor, flow, decoder.

Inference only, batch 1, arrays channels-first ``(C, T)`` (see ``vits_layers`` for why).
Parameter names equal the upstream module paths (``enc_p.encoder.attn_layers.0.conv_q.weight``),
so a converted Piper voice loads with ``load_weights(strict=True)``.

``synthesize`` returns the waveform *and* each phoneme's duration in decoder frames: word
timings come from those durations, not from a recognizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from edgegen.models.fastmath import exp, softmax
from edgegen.models.vits_decoder import Generator
from edgegen.models.vits_duration import StochasticDurationPredictor
from edgegen.models.vits_flow import ResidualCouplingBlock
from edgegen.models.vits_layers import ChannelNorm, Conv1d


@dataclass(frozen=True)
class VitsConfig:
    num_symbols: int = 256  # size of the phoneme-id table
    hidden_channels: int = 192  # text encoder width
    inter_channels: int = 192  # latent (flow / decoder input) width
    filter_channels: int = 768  # text encoder feed-forward width
    n_heads: int = 2
    n_layers: int = 6  # text encoder layers
    kernel_size: int = 3  # text encoder feed-forward conv kernel
    window_size: int = 4  # relative-position attention window (each side)
    dp_filter_channels: int = 192  # stochastic duration predictor width
    dp_kernel_size: int = 3
    flow_kernel_size: int = 5
    flow_n_layers: int = 4  # WN layers per coupling layer
    flow_n_flows: int = 4  # coupling layers
    resblock: str = "2"  # "1" (HiFi-GAN V1, Piper high) or "2" (V2, Piper medium/low)
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_initial_channel: int = 256
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    n_speakers: int = 1
    gin_channels: int = 0  # speaker embedding width (0 = single speaker)
    sample_rate: int = 22050
    hop_length: int = field(init=False)  # samples per decoder frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "hop_length", math.prod(self.upsample_rates))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VitsConfig:
        """Build from a stored config (the keys of this dataclass); unknown keys are an error."""
        names = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - names - {"hop_length"}
        if unknown:
            raise ValueError(f"unknown VITS config keys {sorted(unknown)}; known: {sorted(names)}")
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "resblock_dilation_sizes" in kw:
            kw["resblock_dilation_sizes"] = tuple(tuple(x) for x in kw["resblock_dilation_sizes"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        out["resblock_dilation_sizes"] = [list(x) for x in self.resblock_dilation_sizes]
        for key in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
            out[key] = list(out[key])
        return out


class RelPosAttention(nn.Module):
    """Multi-head self-attention with learned relative-position keys and values (shared by
    heads) inside a window of ±``window`` positions."""

    def __init__(self, channels: int, n_heads: int, window: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.window = window
        k_ch = channels // n_heads
        self.conv_q = Conv1d(channels, channels, 1)
        self.conv_k = Conv1d(channels, channels, 1)
        self.conv_v = Conv1d(channels, channels, 1)
        self.conv_o = Conv1d(channels, channels, 1)
        self.emb_rel_k = mx.zeros((1, 2 * window + 1, k_ch))
        self.emb_rel_v = mx.zeros((1, 2 * window + 1, k_ch))

    def __call__(self, x: mx.array) -> mx.array:
        c, t = x.shape
        h, w = self.n_heads, self.window
        dk = c // h

        def heads(y: mx.array) -> mx.array:
            return y.reshape(h, dk, t).transpose(0, 2, 1)  # (h, T, dk)

        q = heads(self.conv_q(x)) * (1.0 / math.sqrt(dk))
        k, v = heads(self.conv_k(x)), heads(self.conv_v(x))
        # Relative offset r = j - i in [-w, w] indexes the embeddings at r + w.
        pos = mx.arange(t)
        rel_idx = pos[None, :] - pos[:, None] + w  # (T, T)
        in_window = (rel_idx >= 0) & (rel_idx <= 2 * w)
        rel_logits = q @ self.emb_rel_k[0].T  # (h, T, 2w+1)
        idx = mx.broadcast_to(mx.clip(rel_idx, 0, 2 * w)[None], (h, t, t))
        local = mx.take_along_axis(rel_logits, idx, axis=-1)
        scores = q @ k.transpose(0, 2, 1) + mx.where(in_window, local, 0.0)
        p = softmax(scores)
        out = p @ v
        # Attention weight on offset r for query i is p[i, i + r - w] (zero outside the text).
        abs_idx = pos[:, None] + mx.arange(2 * w + 1)[None, :] - w  # (T, 2w+1)
        valid = (abs_idx >= 0) & (abs_idx < t)
        idx = mx.broadcast_to(mx.clip(abs_idx, 0, t - 1)[None], (h, t, 2 * w + 1))
        rel_weights = mx.where(valid, mx.take_along_axis(p, idx, axis=-1), 0.0)
        out = out + rel_weights @ self.emb_rel_v[0]
        return self.conv_o(out.transpose(0, 2, 1).reshape(c, t))


class FFN(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv_1 = Conv1d(channels, filter_channels, kernel)
        self.conv_2 = Conv1d(filter_channels, channels, kernel)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv_2(nn.relu(self.conv_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        hc, n = cfg.hidden_channels, cfg.n_layers
        self.attn_layers = [RelPosAttention(hc, cfg.n_heads, cfg.window_size) for _ in range(n)]
        self.norm_layers_1 = [ChannelNorm(hc) for _ in range(n)]
        self.ffn_layers = [FFN(hc, cfg.filter_channels, cfg.kernel_size) for _ in range(n)]
        self.norm_layers_2 = [ChannelNorm(hc) for _ in range(n)]

    def __call__(self, x: mx.array) -> mx.array:
        for attn, n1, ffn, n2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = n1(x + attn(x))
            x = n2(x + ffn(x))
        return x


class TextEncoder(nn.Module):
    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        self.emb = nn.Embedding(cfg.num_symbols, cfg.hidden_channels)
        self.encoder = Encoder(cfg)
        self.proj = Conv1d(cfg.hidden_channels, 2 * cfg.inter_channels, 1)
        self.scale = math.sqrt(cfg.hidden_channels)

    def __call__(self, ids: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """Phoneme ids (T,) -> hidden (C, T), prior mean and log-std (inter, T)."""
        x = self.encoder((self.emb(ids) * self.scale).T)
        stats = self.proj(x)
        half = stats.shape[0] // 2
        return x, stats[:half], stats[half:]


class Vits(nn.Module):
    """The Piper VITS synthesizer (``SynthesizerTrn``) for inference."""

    def __init__(self, cfg: VitsConfig) -> None:
        super().__init__()
        self.config = cfg
        self.enc_p = TextEncoder(cfg)
        self.dp = StochasticDurationPredictor(
            cfg.hidden_channels,
            cfg.dp_filter_channels,
            cfg.dp_kernel_size,
            gin_channels=cfg.gin_channels,
        )
        self.flow = ResidualCouplingBlock(
            cfg.inter_channels,
            cfg.hidden_channels,
            cfg.flow_kernel_size,
            1,
            cfg.flow_n_layers,
            cfg.flow_n_flows,
            cfg.gin_channels,
        )
        self.dec = Generator(
            cfg.inter_channels,
            cfg.resblock,
            cfg.resblock_kernel_sizes,
            cfg.resblock_dilation_sizes,
            cfg.upsample_rates,
            cfg.upsample_initial_channel,
            cfg.upsample_kernel_sizes,
            cfg.gin_channels,
        )
        if cfg.n_speakers > 1:
            self.emb_g = nn.Embedding(cfg.n_speakers, cfg.gin_channels)

    def durations(
        self,
        ids: mx.array,
        length_scale: float,
        noise_w: float,
        key: mx.array | None,
        speaker: int | None = None,
    ) -> tuple[np.ndarray, mx.array, mx.array, mx.array | None]:
        """Encode and predict each phoneme's duration in frames (ceil'd, as upstream)."""
        g = self._speaker(speaker)
        x, m_p, logs_p = self.enc_p(ids)
        t = ids.shape[0]
        noise = mx.zeros((2, t)) if noise_w == 0 else mx.random.normal((2, t), key=key) * noise_w
        logw = self.dp.log_durations(x, noise, g)
        w = mx.ceil(mx.exp(logw) * length_scale)
        mx.eval(w, m_p, logs_p)
        return np.array(w, dtype=np.int64), m_p, logs_p, g

    def latents(
        self,
        frames: np.ndarray,
        m_p: mx.array,
        logs_p: mx.array,
        noise_scale: float,
        key: mx.array | None,
        g: mx.array | None = None,
    ) -> mx.array:
        """Expand per-phoneme priors to frames, sample, and run the flow back: the decoder's
        input, channels-last (frames, C)."""
        total = int(frames.sum())
        if total < 1:  # upstream clamps the output length to at least one frame
            frames = frames.copy()
            frames[-1] = 1
        idx = mx.array(np.repeat(np.arange(len(frames)), frames).astype(np.int32))
        m = mx.take(m_p, idx, axis=1)
        if noise_scale != 0:
            logs = mx.take(logs_p, idx, axis=1)
            m = m + mx.random.normal(m.shape, key=key) * exp(logs) * noise_scale
        return self.flow.reverse(m, g).T

    def prepare(
        self,
        ids: list[int] | np.ndarray,
        noise_scale: float = 0.667,
        length_scale: float = 1.0,
        noise_w: float = 0.8,
        speaker: int | None = None,
        seed: int | None = 0,
    ) -> Prepared:
        """Everything before the decoder, evaluated: durations and the decoder's input."""
        key = mx.random.key(seed) if seed is not None else None
        k1, k2 = mx.random.split(key) if key is not None else (None, None)
        ids_arr = mx.array(np.asarray(ids, dtype=np.int32))
        frames, m_p, logs_p, g = self.durations(ids_arr, length_scale, noise_w, k1, speaker)
        z = self.latents(frames, m_p, logs_p, noise_scale, k2, g)
        mx.eval(z, *([g] if g is not None else []))
        return Prepared(frames, z, g)

    def vocode(
        self, z: mx.array, g: mx.array | None = None, start: int = 0, end: int | None = None
    ) -> np.ndarray:
        """The waveform of frames ``[start, end)`` of ``z`` (frames, C), decoding only those
        frames and their context (``Generator.context_frames``): chunks decoded this way
        join into the whole decode, up to float32 rounding (their GEMMs have other shapes, so
        BLAS may sum in another order)."""
        total = z.shape[0]
        end = total if end is None else end
        c = self.dec.context_frames
        a, b = max(start - c, 0), min(end + c, total)
        hop = self.config.hop_length
        y = self.dec(z[a:b], g)[(start - a) * hop : (end - a) * hop]
        mx.eval(y)
        return np.array(y, dtype=np.float32)

    def synthesize(
        self,
        ids: list[int] | np.ndarray,
        noise_scale: float = 0.667,
        length_scale: float = 1.0,
        noise_w: float = 0.8,
        speaker: int | None = None,
        seed: int | None = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Phoneme ids -> (float32 waveform, per-id duration in frames of ``hop_length``)."""
        p = self.prepare(ids, noise_scale, length_scale, noise_w, speaker, seed)
        return self.vocode(p.z, p.g), p.frames

    def _speaker(self, speaker: int | None) -> mx.array | None:
        if self.config.n_speakers <= 1:
            return None
        sid = 0 if speaker is None else speaker
        return self.emb_g(mx.array([sid]))[0][:, None]


@dataclass
class Prepared:
    """What :meth:`Vits.prepare` hands the decoder."""

    frames: np.ndarray  # each phoneme id's duration, in frames of hop_length samples
    z: mx.array  # decoder input (frames, C), evaluated
    g: mx.array | None  # speaker embedding, evaluated (multi-speaker voices)
