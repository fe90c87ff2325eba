"""Piper voice (``VOICE.onnx`` + ``VOICE.onnx.json``) -> MLX weights and config.

1. Read the ONNX initializers and nodes (``onnx_reader``; no onnxruntime, no onnx package).
2. Name every weight by its module path. Most initializers already carry it; the exporter
   folded a few (weight norm, the duration predictor's ``exp(-logs)``) into anonymous or
   misleading names (the text embedding is called ``sid`` in the joe voice), so those are named
   by the node that consumes them (``/flow/flows.0/enc/in_layers.0/Conv`` input 1 ->
   ``flow.flows.0.enc.in_layers.0.weight``).
3. Derive the architecture from weight shapes and conv attributes (dilations and strides are
   not in the JSON config), then check strictly: every weight used once, every model parameter
   filled, every shape equal — the offending key is named.
4. Optionally 8/4-bit group-quantize them (:func:`quantize_weights`). Writing the store artifact
   is the runtime's part (``edgegen/speech/convert.py``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.converters.onnx_reader import Graph, read_onnx
from edgegen.errors import ModelError, UnsupportedModelError, UsageError, WeightMappingError

_PREFIXES = ("enc_p.", "dp.", "flow.", "dec.", "emb_g.")
# Constants the exporter folded, with the transform that recovers the upstream parameter.
_FOLDED = {"/dp/flows.0/Exp_output_0": ("dp.flows.0.logs", lambda a: -np.log(a))}
_PARAM_BY_INPUT = {("Conv", 1): "weight", ("Conv", 2): "bias", ("ConvTranspose", 1): "weight",
                   ("ConvTranspose", 2): "bias", ("Gather", 0): "weight"}  # fmt: skip
_UPS = re.compile(r"dec\.ups\.\d+\.weight$")


def _module_of(node_name: str) -> str:
    """``/flow/flows.0/enc/in_layers.0/Conv`` -> ``flow.flows.0.enc.in_layers.0``."""
    return ".".join(node_name.strip("/").split("/")[:-1])


def name_weights(graph: Graph) -> dict[str, np.ndarray]:
    """Upstream (PyTorch) names and layouts for every learned tensor in ``graph``."""
    consumers: dict[str, list[tuple[str, str, int]]] = {}
    for node in graph.nodes:
        for i, inp in enumerate(node.inputs):
            consumers.setdefault(inp, []).append((node.name, node.op_type, i))
    out: dict[str, np.ndarray] = {}
    for name, arr in graph.initializers.items():
        if name in _FOLDED:
            target, transform = _FOLDED[name]
            arr = transform(arr)
        elif name.startswith(_PREFIXES):
            target = name
        elif arr.dtype != np.float32 or arr.ndim == 0:
            continue  # shape/index plumbing and scalar constants, not weights
        else:
            uses = consumers.get(name, [])
            kinds = {(op, i) for _, op, i in uses}
            if len(kinds) != 1 or next(iter(kinds)) not in _PARAM_BY_INPUT:
                raise WeightMappingError(
                    f"ONNX initializer {name!r} {arr.shape} has no module name and is used by "
                    f"{[u[0] for u in uses] or 'nothing'}; cannot map it"
                )
            op, i = next(iter(kinds))
            target = f"{_module_of(uses[0][0])}.{_PARAM_BY_INPUT[(op, i)]}"
        if target in out:
            raise WeightMappingError(f"two ONNX initializers map to {target!r} (second: {name!r})")
        out[target] = arr.astype(np.float32)
    return out


def _conv_attr(graph: Graph, module: str, key: str) -> list[int]:
    for node in graph.nodes:
        if node.op_type in ("Conv", "ConvTranspose") and _module_of(node.name) == module:
            return list(node.attrs.get(key, [1]))
    raise WeightMappingError(f"no convolution node for {module!r} in the ONNX graph")


def infer_config(w: dict[str, np.ndarray], graph: Graph, voice_json: dict[str, Any]):
    """Build a :class:`VitsConfig` from weight shapes, conv attributes and the voice JSON."""
    from edgegen.models.vits import VitsConfig

    if "dp.flows.7.proj.weight" not in w:
        raise UnsupportedModelError(
            "this VITS voice has no stochastic duration predictor (dp.flows.*); only SDP voices "
            "(all Piper voices) are supported"
        )

    def count(pattern: str) -> int:
        rx = re.compile(pattern)
        return len({m.group(1) for k in w if (m := rx.match(k))})

    hidden = w["enc_p.emb.weight"].shape[1]
    k_ch = w["enc_p.encoder.attn_layers.0.emb_rel_k"].shape[2]
    n_ups = count(r"dec\.ups\.(\d+)\.weight")
    n_res = count(r"dec\.resblocks\.(\d+)\.")
    n_kernels = n_res // n_ups
    resblock = "1" if "dec.resblocks.0.convs1.0.weight" in w else "2"
    conv_name = "convs1" if resblock == "1" else "convs"
    kernels, dilations = [], []
    for j in range(n_kernels):
        n_convs = count(rf"dec\.resblocks\.{j}\.{conv_name}\.(\d+)\.weight")
        kernels.append(w[f"dec.resblocks.{j}.{conv_name}.0.weight"].shape[2])
        dilations.append(
            [
                _conv_attr(graph, f"dec.resblocks.{j}.{conv_name}.{n}", "dilations")[0]
                for n in range(n_convs)
            ]  # fmt: skip
        )
    ups = [w[f"dec.ups.{i}.weight"].shape[2] for i in range(n_ups)]
    rates = [_conv_attr(graph, f"dec.ups.{i}", "strides")[0] for i in range(n_ups)]
    speakers = int(voice_json.get("num_speakers", 1))
    return VitsConfig(
        num_symbols=w["enc_p.emb.weight"].shape[0],
        hidden_channels=hidden,
        inter_channels=w["enc_p.proj.weight"].shape[0] // 2,
        filter_channels=w["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[0],
        n_heads=hidden // k_ch,
        n_layers=count(r"enc_p\.encoder\.attn_layers\.(\d+)\."),
        kernel_size=w["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[2],
        window_size=(w["enc_p.encoder.attn_layers.0.emb_rel_k"].shape[1] - 1) // 2,
        dp_filter_channels=w["dp.pre.weight"].shape[0],
        dp_kernel_size=w["dp.convs.convs_sep.0.weight"].shape[2],
        flow_kernel_size=w["flow.flows.0.enc.in_layers.0.weight"].shape[2],
        flow_n_layers=count(r"flow\.flows\.0\.enc\.in_layers\.(\d+)\."),
        flow_n_flows=count(r"flow\.flows\.(\d+)\.pre\."),
        resblock=resblock,
        resblock_kernel_sizes=tuple(kernels),
        resblock_dilation_sizes=tuple(tuple(d) for d in dilations),
        upsample_rates=tuple(rates),
        upsample_initial_channel=w["dec.conv_pre.weight"].shape[0],
        upsample_kernel_sizes=tuple(ups),
        n_speakers=speakers,
        gin_channels=w["emb_g.weight"].shape[1] if "emb_g.weight" in w else 0,
        sample_rate=int(voice_json.get("audio", {}).get("sample_rate", 22050)),
    )


def to_mlx_layout(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Conv weights to MLX's (C_out, K, C_in); PyTorch's ConvTranspose is (C_in, C_out, K)."""
    out = {}
    for k, a in w.items():
        if k.endswith(".weight") and a.ndim == 3:
            a = a.transpose(1, 2, 0) if _UPS.search(k) else a.transpose(0, 2, 1)
        out[k] = np.ascontiguousarray(a)
    return out


def check_against_model(w: dict[str, np.ndarray], cfg) -> None:
    """Strict mapping: same key set and shapes as a freshly built model."""
    from mlx.utils import tree_flatten

    from edgegen.models.vits import Vits

    expected = {k: tuple(v.shape) for k, v in tree_flatten(Vits(cfg).parameters())}
    missing = sorted(set(expected) - set(w))
    unused = sorted(set(w) - set(expected))
    if missing:
        raise WeightMappingError(f"voice is missing weight {missing[0]!r} ({len(missing)} missing)")
    if unused:
        raise WeightMappingError(f"voice weight {unused[0]!r} is not used ({len(unused)} unused)")
    for k, shape in expected.items():
        if tuple(w[k].shape) != shape:
            raise WeightMappingError(f"weight {k!r} has shape {w[k].shape}, expected {shape}")


def read_voice_json(onnx_path: Path) -> tuple[Path, dict[str, Any]]:
    path = Path(f"{onnx_path}.json")
    if not path.is_file():
        raise ModelNotFound(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"voice config {str(path)!r} is not valid JSON: {e}") from e
    for key in ("phoneme_id_map", "espeak"):
        if key not in data:
            raise ModelError(f"voice config {str(path)!r} has no {key!r}; is it a Piper voice?")
    if data.get("phoneme_type", "espeak") != "espeak":
        raise UnsupportedModelError(
            f"voice phoneme_type {data['phoneme_type']!r} is not supported; only 'espeak' is"
        )
    return path, data


def ModelNotFound(path: Path) -> Exception:
    from edgegen.errors import ModelNotFoundError

    return ModelNotFoundError(
        f"Piper voice config {str(path)!r} not found; a voice needs VOICE.onnx and VOICE.onnx.json"
    )


def load_piper_onnx(onnx_path: Path):
    """(VitsConfig, MLX-layout weights, voice JSON) from a Piper voice, fully checked."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelNotFound(onnx_path)
    _, voice_json = read_voice_json(onnx_path)
    graph = read_onnx(onnx_path)
    torch_named = name_weights(graph)
    cfg = infer_config(torch_named, graph, voice_json)
    weights = to_mlx_layout(torch_named)
    check_against_model(weights, cfg)
    return cfg, weights, voice_json


def check_quantize(bits: int | None) -> None:
    if bits not in (None, 4, 8):
        raise UsageError(f"voice quantization to {bits} bits is not supported; use 8 or 4")


def param_count(weights: dict[str, np.ndarray]) -> int:
    return sum(math.prod(a.shape) for a in weights.values())


_CHECK_PHONEMES = "həlˈoʊ wˈɜːld, ðɪs ɪz ɐ tˈɛst."


def check_ids(voice_json: dict[str, Any]) -> list[int]:
    """A fixed phrase in the voice's own phoneme ids (Piper's BOS/PAD/EOS framing)."""
    id_map = voice_json["phoneme_id_map"]
    ids = [*id_map["^"], *id_map["_"]]
    for ph in _CHECK_PHONEMES:
        if ph in id_map:
            ids += [*id_map[ph], *id_map["_"]]
    return [*ids, *id_map["$"]]
