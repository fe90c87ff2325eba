"""Read ``.safetensors`` weights with validation, so a bad file gives one clear line.

The format is an 8-byte little-endian header length, a JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``) and the
raw data. We check the header ourselves before handing the file to ``mx.load`` (which reads
lazily): a truncated download or a corrupt file is named with what is wrong, instead of
surfacing as a C++ exception mid-generation.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import mlx.core as mx

from edgegen.errors import ModelError, OutputError

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1,
}  # fmt: skip
_MAX_HEADER = 100 * 1024 * 1024

# Weight file names, most preferred first: full precision, then the fp16 variant.
_STEMS = ("diffusion_pytorch_model", "model")
_VARIANTS = ("", ".fp16")


def read_header(path: Path) -> dict[str, dict]:
    """Validated tensor table of a safetensors file (without ``__metadata__``)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise ModelError(f"{str(path)!r} is not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", raw_len)
            if n > min(_MAX_HEADER, size - 8):
                raise ModelError(
                    f"{str(path)!r} is corrupt or truncated: header claims {n} bytes, "
                    f"file has {size}"
                )
            header = json.loads(f.read(n))
    except OSError as e:
        raise ModelError(f"cannot read {str(path)!r}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{str(path)!r} is corrupt: its header is not valid JSON") from e
    if not isinstance(header, dict):
        raise ModelError(f"{str(path)!r} is corrupt: header is not a JSON object")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{str(path)!r} is corrupt: bad entry for tensor {name!r}") from e
        if dtype not in _ITEMSIZE:
            raise ModelError(f"{str(path)!r}: tensor {name!r} has unsupported dtype {dtype!r}")
        if end - begin != math.prod(shape) * _ITEMSIZE[dtype] or begin < 0:
            raise ModelError(f"{str(path)!r} is corrupt: tensor {name!r} has inconsistent size")
        if end > data_len:
            raise ModelError(
                f"{str(path)!r} is truncated: tensor {name!r} ends at byte {end}, "
                f"data holds {data_len}"
            )
    return header


def write_file(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> int:
    """Write ``arrays`` (MLX layout, flat names) as one safetensors file: every artifact's
    weights go through here. Returns the file's size in bytes."""
    try:
        mx.save_safetensors(str(path), arrays, metadata=metadata)
        return Path(path).stat().st_size
    except (RuntimeError, OSError, ValueError) as e:
        raise OutputError(f"cannot write {str(path)!r}: {e}") from e


def read_file(path: Path) -> dict[str, mx.array]:
    """All tensors of one validated safetensors file, loaded lazily by MLX."""
    read_header(path)
    try:
        return mx.load(str(path))
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"cannot load {str(path)!r}: {e}") from e


def find_weights(directory: Path) -> list[Path]:
    """The safetensors file(s) holding a component's weights (several if sharded)."""
    directory = Path(directory)
    for stem in _STEMS:
        for variant in _VARIANTS:
            single = directory / f"{stem}{variant}.safetensors"
            if single.is_file():
                return [single]
            index = directory / f"{stem}{variant}.safetensors.index.json"
            if index.is_file():
                try:
                    weight_map = json.loads(index.read_text())["weight_map"]
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise ModelError(f"{str(index)!r} is not a valid shard index") from e
                shards = [directory / name for name in sorted(set(weight_map.values()))]
                missing = [s.name for s in shards if not s.is_file()]
                if missing:
                    raise ModelError(f"{str(directory)!r} lacks shard(s) {', '.join(missing)}")
                return shards
    pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(
        p.name for p in directory.glob("*.ckpt")
    )
    if pickles:
        raise ModelError(
            f"{str(directory)!r} has only PyTorch pickle weights ({pickles[0]}); edgegen reads "
            ".safetensors (pickles can run code): re-save the model with safetensors"
        )
    raise ModelError(f"{str(directory)!r} has no .safetensors weights")


def read_component(directory: Path) -> dict[str, mx.array]:
    """Every tensor of a diffusers/transformers component folder, shards merged."""
    weights: dict[str, mx.array] = {}
    for path in find_weights(directory):
        for key, value in read_file(path).items():
            if key in weights:
                raise ModelError(f"tensor {key!r} appears in more than one shard of {directory}")
            weights[key] = value
    return weights
