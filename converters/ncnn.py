"""Read an ncnn model (``MODEL.param`` text graph + ``MODEL.bin`` weights) with no ncnn.

The ``.param`` file is text::

    7767517                                   magic
    LAYERS BLOBS
    Type  name  n_in n_out  in... out...  key=value ...

A ``key`` is a small integer; ``-233xx=n,a,b,...`` is an array for key ``xx``. Values with a
``.`` or an exponent are floats, others ints.

The ``.bin`` file is the layers' weights, back to back in layer order, each layer reading what
its type declares (only the layer types below carry weights). A *tagged* blob starts with a
4-byte tag saying how it is stored: ``0x01306B47`` float16, ``0x000D4B38`` int8, ``0x00000000``
float32, any other non-zero tag a 256-entry float table followed by uint8 indices; each is
padded to 4 bytes. An *untagged* blob is plain float32. The reader checks that the file ends
exactly where the last weight does, so a truncated or mismatched ``.bin`` is reported, not
misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.errors import ModelError, ModelNotFoundError, UnsupportedModelError

MAGIC = 7767517
_TAG_FP16 = 0x01306B47
_TAG_INT8 = 0x000D4B38
_TAG_FP32_SCALED = 0x0002C056


@dataclass
class Layer:
    """One line of a ``.param`` graph, with the weights the ``.bin`` gave it."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[int | float]]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: int | float | list[int | float]) -> int | float | list:
        return self.params.get(key, default)


@dataclass
class Graph:
    layers: list[Layer]
    path: Path

    def producer(self, blob: str) -> Layer:
        """The layer that writes ``blob``, looking through Split copies."""
        for layer in self.layers:
            if blob in layer.outputs:
                return self.producer(layer.inputs[0]) if layer.type == "Split" else layer
        raise ModelError(f"ncnn graph {str(self.path)!r}: no layer produces blob {blob!r}")

    def compute(self) -> list[Layer]:
        """The layers that compute something (no Input, no Split)."""
        return [layer for layer in self.layers if layer.type not in ("Input", "Split")]


def _value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, int | float | list[int | float]]:
    params: dict[int, int | float | list[int | float]] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        try:
            k = int(key)
            if k <= -23300:
                count, *items = value.split(",")
                if int(count) != len(items):
                    raise ValueError(f"array says {count} items, has {len(items)}")
                params[-23300 - k] = [_value(v) for v in items]
            else:
                if not sep:
                    raise ValueError("no '='")
                params[k] = _value(value)
        except ValueError as e:
            raise ModelError(f"{where}: bad parameter {token!r} ({e})") from None
    return params


def read_param(path: Path) -> list[Layer]:
    """The layers of a ``.param`` file, in file (= execution) order."""
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise ModelNotFoundError(f"ncnn param file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read ncnn param file {str(path)!r}: {e}") from None
    if not lines or lines[0] != [str(MAGIC)]:
        raise ModelError(
            f"{str(path)!r} is not a text ncnn .param file (it must start with {MAGIC})"
        )
    try:
        n_layers, _n_blobs = (int(v) for v in lines[1])
    except (IndexError, ValueError):
        raise ModelError(f"{str(path)!r}: line 2 must be 'LAYERS BLOBS'") from None
    body = lines[2:]
    if len(body) != n_layers:
        raise ModelError(f"{str(path)!r} declares {n_layers} layers but has {len(body)}")
    layers = []
    for i, tokens in enumerate(body, start=3):
        where = f"{str(path)!r} line {i}"
        try:
            kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        except (IndexError, ValueError):
            raise ModelError(f"{where}: expected 'Type name inputs outputs ...'") from None
        blobs = tokens[4 : 4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise ModelError(f"{where}: {kind} {name} lists fewer blobs than {n_in} + {n_out}")
        params = _parse_params(tokens[4 + n_in + n_out :], where)
        layers.append(Layer(kind, name, blobs[:n_in], blobs[n_in:], params))
    return layers


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError(
                f"ncnn weights {str(self.path)!r} end at byte {len(self.data)} while reading "
                f"{what} (needs {self.pos + n}); is the .bin truncated or for another .param?"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def floats(self, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * n, what), dtype="<f4").copy()

    def tagged(self, n: int, what: str) -> np.ndarray:
        head = self.take(4, what)
        tag = int.from_bytes(head, "little")
        padded = (n + 3) // 4 * 4
        if tag == _TAG_FP16:
            half = np.frombuffer(self.take(2 * ((n + 1) // 2 * 2), what), dtype="<f2")
            return half[:n].astype(np.float32)
        if tag in (0, _TAG_FP32_SCALED):
            return self.floats(n, what)
        if tag == _TAG_INT8:
            raise UnsupportedModelError(
                f"{str(self.path)!r}: {what} is int8-quantized (ncnn2int8); convert the float "
                "model instead"
            )
        table = self.floats(256, what)
        index = np.frombuffer(self.take(padded, what), dtype=np.uint8)[:n]
        return table[index]


def _load_weights(layer: Layer, r: _Reader) -> None:
    what = f"{layer.type} {layer.name}"
    if layer.type in ("Convolution", "Deconvolution"):
        size = int(layer.get(6, 0))
        layer.weights["weight"] = r.tagged(size, f"{what} weights")
        if int(layer.get(5, 0)):
            layer.weights["bias"] = r.floats(int(layer.get(0, 0)), f"{what} bias")
        if int(layer.get(8, 0)):
            raise UnsupportedModelError(f"{str(r.path)!r}: {what} is int8-quantized")
    elif layer.type == "PReLU":
        layer.weights["slope"] = r.floats(int(layer.get(0, 1)), f"{what} slopes")
    elif layer.type in (
        "BatchNorm",
        "Scale",
        "MemoryData",
        "InstanceNorm",
        "LayerNorm",
        "InnerProduct",
    ):
        raise UnsupportedModelError(
            f"{str(r.path)!r}: layer type {layer.type} ({layer.name}) is not supported by "
            "edgegen's ncnn reader (it reads Convolution, PReLU and weight-free layers)"
        )


def read_ncnn(param: Path) -> Graph:
    """Parse ``MODEL.param`` and the ``MODEL.bin`` beside it into a :class:`Graph`."""
    param = Path(param)
    layers = read_param(param)
    bin_path = param.with_suffix(".bin")
    try:
        data = bin_path.read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"ncnn weights {str(bin_path)!r} do not exist; MODEL.param needs MODEL.bin beside it"
        ) from None
    except OSError as e:
        raise ModelError(f"cannot read ncnn weights {str(bin_path)!r}: {e.strerror}") from None
    reader = _Reader(data, bin_path)
    for layer in layers:
        _load_weights(layer, reader)
    if reader.pos != len(data):
        raise ModelError(
            f"ncnn weights {str(bin_path)!r} have {len(data) - reader.pos} bytes after the last "
            f"weight the .param declares; is it the .bin of another model?"
        )
    return Graph(layers, param)
