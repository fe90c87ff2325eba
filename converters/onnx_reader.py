"""A minimal ONNX reader: initializers (as numpy arrays) and nodes (name, op, inputs, attributes).

Why not the ``onnx`` package: converting a voice needs four protobuf messages out of ONNX's
schema, and ``onnx`` + ``protobuf`` would be a ~20 MB install (with native code) used for a
few hundred lines of work. This parses the protobuf wire format directly (it is stable and
documented at protobuf.dev/programming-guides/encoding) and reads only the fields below; any
other field is skipped by its wire type, so newer ONNX files still parse.

Field numbers (onnx/onnx.proto): ModelProto.graph=7; GraphProto.node=1, initializer=5;
NodeProto.input=1, output=2, name=3, op_type=4, attribute=5; AttributeProto.name=1, f=2, i=3,
s=4, floats=7, ints=8; TensorProto.dims=1, data_type=2, float_data=4, int32_data=5,
int64_data=7, name=8, raw_data=9, double_data=10, data_location=14.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.errors import ModelError

# TensorProto.DataType -> numpy dtype (only the types a TTS graph uses).
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_,
           10: np.float16, 11: np.float64}  # fmt: skip


@dataclass
class Node:
    name: str
    op_type: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass
class Graph:
    initializers: dict[str, np.ndarray]
    nodes: list[Node]


class _Truncated(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) where value is an int or a memoryview slice."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ModelError(f"unsupported protobuf wire type {wire} (field {num})")
        if pos > end:
            raise _Truncated
        yield num, wire, val


def _packed_ints(wire: int, val) -> list[int]:
    if wire == 0:
        return [val]
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(v)
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    name, dims, dtype, raw = "", [], 1, None
    floats: list[float] = []
    ints: list[int] = []
    for num, wire, val in _fields(buf):
        if num == 1:
            dims += [_signed(v) for v in _packed_ints(wire, val)]
        elif num == 2:
            dtype = val
        elif num == 8:
            name = bytes(val).decode("utf-8")
        elif num == 9:
            raw = bytes(val)
        elif num == 4:
            floats += list(struct.unpack(f"<{len(val) // 4}f", val)) if wire == 2 else []
            if wire == 5:
                floats.append(struct.unpack("<f", val)[0])
        elif num in (5, 7):
            ints += [_signed(v) for v in _packed_ints(wire, val)]
        elif num == 14 and val == 1:
            raise ModelError(f"tensor {name!r} uses external data, which is not supported")
    if dtype not in _DTYPES:
        raise ModelError(f"tensor {name!r} has unsupported ONNX data type {dtype}")
    np_dtype = _DTYPES[dtype]
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    elif floats:
        arr = np.array(floats, dtype=np_dtype)
    else:
        arr = np.array(ints, dtype=np_dtype)
    count = int(np.prod(dims)) if dims else 1
    if arr.size != count:
        raise ModelError(f"tensor {name!r} holds {arr.size} values for shape {dims}")
    return name, arr.reshape(dims)


def _attribute(buf: memoryview) -> tuple[str, object]:
    name, value = "", None
    ints: list[int] = []
    floats: list[float] = []
    for num, wire, val in _fields(buf):
        if num == 1:
            name = bytes(val).decode("utf-8")
        elif num == 2:
            value = struct.unpack("<f", val)[0]
        elif num == 3:
            value = _signed(val)
        elif num == 4:
            value = bytes(val)
        elif num == 7:
            if wire == 2:
                floats += list(struct.unpack(f"<{len(val) // 4}f", val))
            else:
                floats.append(struct.unpack("<f", val)[0])
        elif num == 8:
            ints += [_signed(v) for v in _packed_ints(wire, val)]
    if ints:
        value = ints
    elif floats:
        value = floats
    return name, value


def _node(buf: memoryview) -> Node:
    node = Node("", "")
    for num, _, val in _fields(buf):
        if num == 1:
            node.inputs.append(bytes(val).decode("utf-8"))
        elif num == 2:
            node.outputs.append(bytes(val).decode("utf-8"))
        elif num == 3:
            node.name = bytes(val).decode("utf-8")
        elif num == 4:
            node.op_type = bytes(val).decode("utf-8")
        elif num == 5:
            k, v = _attribute(val)
            node.attrs[k] = v
    return node


def read_onnx(path: Path) -> Graph:
    """Parse ``path``; a truncated or non-ONNX file raises :class:`ModelError`."""
    try:
        data = memoryview(Path(path).read_bytes())
    except OSError as e:
        raise ModelError(f"cannot read {str(path)!r}: {e.strerror}") from e
    try:
        graph = None
        for num, wire, val in _fields(data):
            if num == 7 and wire == 2:
                graph = val
        if graph is None:
            raise ModelError(f"{str(path)!r} is not an ONNX model (no graph)")
        inits: dict[str, np.ndarray] = {}
        nodes: list[Node] = []
        for num, wire, val in _fields(graph):
            if num == 1 and wire == 2:
                nodes.append(_node(val))
            elif num == 5 and wire == 2:
                name, arr = _tensor(val)
                inits[name] = arr
    except (_Truncated, UnicodeDecodeError, struct.error, ValueError) as e:
        raise ModelError(f"{str(path)!r} is not a valid ONNX file (truncated or corrupt)") from e
    if not nodes:
        raise ModelError(f"{str(path)!r} is not an ONNX model (graph has no nodes)")
    return Graph(inits, nodes)
