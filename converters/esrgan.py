"""Real-ESRGAN ncnn files (``MODEL.param`` + ``MODEL.bin``) → an :class:`UpscalerConfig` and
MLX-layout weights with BasicSR's parameter names.

``converters/ncnn.py`` reads the graph; this module recognises which of the two generators it
is by walking the layers in order and checking every one against the architecture (a graph
that is neither is refused with the first layer that does not fit):

* SRVGGNetCompact: ``Conv, act`` × (num_conv + 1), ``Conv`` to 3·s² channels,
  ``PixelShuffle s``, ``Interp nearest ×s`` of the input, ``BinaryOp add`` and optionally an
  ``Interp bicubic`` to the file's output scale (animevideov3 x2/x3 are the ×4 network plus a
  bicubic ×0.5/×0.75).
* RRDBNet: ``conv_first``, num_block × 3 dense blocks of 5 convolutions (LeakyReLU 0.2 fused
  into the first four), ``conv_body``, two ``Interp nearest ×2`` + convolution, ``conv_hr``,
  ``conv_last``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgegen.converters.ncnn import Graph, Layer, read_ncnn
from edgegen.errors import UnsupportedModelError
from edgegen.models.esrgan import UpscalerConfig


class _NotThis(Exception):
    """The graph does not follow the architecture being tried (message: where and why)."""


def _conv(layer: Layer, cin: int, cout: int | None = None, act: int = 0) -> np.ndarray:
    """Check a 3×3 stride-1 same-padded convolution; its weight in MLX layout (O, 3, 3, I)."""
    if layer.type != "Convolution":
        raise _NotThis(f"{layer.name}: expected a Convolution, found {layer.type}")
    k = int(layer.get(1, 1))
    cout_ = int(layer.get(0, 0))
    shape_ok = (
        k == 3 and int(layer.get(11, k)) == 3 and int(layer.get(3, 1)) == 1
        and int(layer.get(2, 1)) == 1 and int(layer.get(4, 0)) == 1 and int(layer.get(5, 0)) == 1
    )  # fmt: skip
    if not shape_ok:
        raise _NotThis(f"{layer.name}: expected a 3×3, stride-1, padded convolution with bias")
    if cout is not None and cout_ != cout:
        raise _NotThis(f"{layer.name}: expected {cout} output channels, found {cout_}")
    if int(layer.get(9, 0)) != act:
        raise _NotThis(f"{layer.name}: activation type {layer.get(9, 0)}, expected {act}")
    w = layer.weights["weight"]
    if w.size != cout_ * cin * 9:
        raise _NotThis(f"{layer.name}: {w.size} weights, expected {cout_}×{cin}×3×3")
    return np.ascontiguousarray(w.reshape(cout_, cin, 3, 3).transpose(0, 2, 3, 1))


def _put(weights: dict[str, np.ndarray], name: str, layer: Layer, w: np.ndarray) -> None:
    weights[f"{name}.weight"] = w
    weights[f"{name}.bias"] = layer.weights["bias"]


def _interp(layer: Layer, mode: int) -> float:
    if layer.type != "Interp" or int(layer.get(0, 0)) != mode:
        raise _NotThis(f"{layer.name}: expected Interp type {mode}, found {layer.type}")
    sy, sx = float(layer.get(1, 1.0)), float(layer.get(2, 1.0))
    if sy != sx:
        raise _NotThis(f"{layer.name}: unequal scales {sy} and {sx}")
    return sy


def _srvgg(graph: Graph) -> tuple[UpscalerConfig, dict[str, np.ndarray]]:
    layers = graph.compute()
    weights: dict[str, np.ndarray] = {}
    i, cin, index = 0, 3, 0
    feat = int(layers[0].get(0, 0)) if layers else 0
    act_kind = None
    while i + 1 < len(layers) and layers[i + 1].type in ("PReLU", "ReLU"):
        _put(weights, f"body.{index}", layers[i], _conv(layers[i], cin, feat))
        a = layers[i + 1]
        if a.type == "PReLU":
            slope = a.weights["slope"]
            if slope.size != feat:
                raise _NotThis(f"{a.name}: {slope.size} PReLU slopes for {feat} channels")
            weights[f"body.{index + 1}.weight"] = slope
            kind = "prelu"
        else:
            kind = "leakyrelu" if abs(float(a.get(0, 0.0)) - 0.1) < 1e-6 else "relu"
            if kind == "relu" and float(a.get(0, 0.0)) != 0.0:
                raise _NotThis(f"{a.name}: LeakyReLU slope {a.get(0, 0.0)} (SRVGG uses 0.1)")
        if act_kind not in (None, kind):
            raise _NotThis(f"{a.name}: mixed activations")
        act_kind, cin, index, i = kind, feat, index + 2, i + 2
    if index < 4:
        raise _NotThis("fewer than two convolution+activation pairs at the start")
    last = layers[i]
    cout = int(last.get(0, 0))
    scale = int(round((cout / 3) ** 0.5))
    if 3 * scale * scale != cout:
        raise _NotThis(f"{last.name}: {cout} output channels is not 3·s²")
    _put(weights, f"body.{index}", last, _conv(last, feat, cout))
    rest = layers[i + 1 :]
    if len(rest) < 3 or rest[0].type != "PixelShuffle" or int(rest[0].get(0, 1)) != scale:
        raise _NotThis(f"after {last.name}: expected PixelShuffle {scale}")
    if int(rest[0].get(1, 0)) != 0:
        raise _NotThis(f"{rest[0].name}: only PyTorch-order pixel shuffle (mode 0) is supported")
    if _interp(rest[1], 1) != scale or graph.producer(rest[1].inputs[0]).type != "Input":
        raise _NotThis(f"{rest[1].name}: expected the input upsampled ×{scale} (nearest)")
    if rest[2].type != "BinaryOp" or int(rest[2].get(0, 0)) != 0:
        raise _NotThis(f"{rest[2].name}: expected BinaryOp add")
    output_scale = scale
    if len(rest) == 4:
        factor = _interp(rest[3], 3)
        output_scale = round(scale * factor)
        if abs(output_scale - scale * factor) > 1e-6:
            raise _NotThis(f"{rest[3].name}: output scale {scale * factor} is not an integer")
    elif len(rest) > 4:
        raise _NotThis(f"{rest[4].name}: unexpected layer after the output")
    cfg = UpscalerConfig(
        arch="srvggnet-compact", scale=scale, output_scale=output_scale, num_feat=feat,
        num_conv=index // 2 - 1, act=act_kind or "prelu",
    )  # fmt: skip
    return cfg, weights


def _rrdb(graph: Graph) -> tuple[UpscalerConfig, dict[str, np.ndarray]]:
    layers = graph.compute()
    convs = [layer for layer in layers if layer.type == "Convolution"]
    interps = [layer for layer in layers if layer.type == "Interp"]
    if not convs:
        raise _NotThis("no convolutions")
    feat = int(convs[0].get(0, 0))
    grow = int(convs[1].get(0, 0)) if len(convs) > 1 else 0
    blocks, rem = divmod(len(convs) - 6, 15)
    if rem or blocks < 1:
        raise _NotThis(f"{len(convs)} convolutions is not 6 + 15·blocks")
    if len(interps) != 2 or any(_interp(x, 1) != 2.0 for x in interps):
        raise _NotThis("expected exactly two nearest ×2 upsamplings")
    weights: dict[str, np.ndarray] = {}
    it = iter(convs)
    first = next(it)
    _put(weights, "conv_first", first, _conv(first, 3, feat))
    for b in range(blocks):
        for r in range(1, 4):
            for c in range(1, 6):
                layer = next(it)
                cin = feat + (c - 1) * grow
                out = grow if c < 5 else feat
                _put(weights, f"body.{b}.rdb{r}.conv{c}", layer,
                     _conv(layer, cin, out, act=2 if c < 5 else 0))  # fmt: skip
    for name, act in (("conv_body", 0), ("conv_up1", 2), ("conv_up2", 2), ("conv_hr", 2)):
        layer = next(it)
        _put(weights, name, layer, _conv(layer, feat, feat, act=act))
    last = next(it)
    _put(weights, "conv_last", last, _conv(last, feat, 3))
    for layer in layers:
        if layer.type == "Eltwise" and (
            int(layer.get(0, 1)) != 1 or list(layer.get(1, [])) not in ([0.2, 1.0], [])
        ):
            raise _NotThis(f"{layer.name}: expected a 0.2-scaled residual sum")
    for layer in convs:
        if int(layer.get(9, 0)) == 2 and abs(float(layer.get(10, [0.0])[0]) - 0.2) > 1e-6:
            raise _NotThis(f"{layer.name}: LeakyReLU slope {layer.get(10)} (RRDBNet uses 0.2)")
    cfg = UpscalerConfig(
        arch="rrdbnet", scale=4, output_scale=4, num_feat=feat, num_block=blocks,
        num_grow_ch=grow,
    )  # fmt: skip
    return cfg, weights


def read_upscaler(param: Path) -> tuple[UpscalerConfig, dict[str, np.ndarray], Graph]:
    """Recognise a Real-ESRGAN ncnn model; (config, MLX-layout weights, the parsed graph)."""
    graph = read_ncnn(Path(param))
    reasons = []
    for recognise in (_srvgg, _rrdb):
        try:
            cfg, weights = recognise(graph)
            return cfg, weights, graph
        except _NotThis as e:
            reasons.append(str(e))
    raise UnsupportedModelError(
        f"ncnn model {str(param)!r} is neither SRVGGNetCompact ({reasons[0]}) nor RRDBNet "
        f"({reasons[1]}); edgegen converts Real-ESRGAN upscalers of these two architectures"
    )
