"""Group-wise affine quantization of converted models: which layers, and how they run.

Every ``group_size`` consecutive input weights of an output row share one scale and one bias
(MLX's ``mx.quantize``, mode ``"affine"``); 4-bit weights with fp16 scales and biases cost
4 + 32/64 = 4.5 bits a weight at group size 64, 28 % of fp16.

Which layers are quantized, and why the others stay in the artifact's float dtype:

- **UNet**: every ``Linear`` (attention projections, feed-forward, ``proj_in``/``proj_out``,
  the resnets' ``time_emb_proj``) and every ``Conv2d`` of the resnets, down- and upsamplers.
  The 3×3 convolutions hold most of the UNet's weights (about 60 % of SD 1.5's), so a policy
  that skipped them could never reach a small artifact. Kept in float:

  * ``conv_in`` and ``conv_out``, the first and last layers: they map to and from the
    4-channel latent space, so their error lands directly on the noise prediction that every
    sampler step integrates; together they are 0.003 % of the weights.
  * ``time_embedding`` and SDXL's ``add_embedding`` MLPs: their output shifts the features
    of every resnet in the network (one error, everywhere), for 0.3 % of the weights.
  * norms and biases: vectors, nothing to gain.
- **Text encoders**: every ``Linear`` of the transformer layers, but never below 8 bits: the
  encoder runs once per prompt, so its speed does not matter, while its error biases the
  conditioning of every step. ``token_embedding`` stays float: it is a lookup table, not a
  matmul, so each token's vector would carry its rounding error unaveraged (and quantized
  lookup saves little next to the UNet).
- **VAE**: not quantized. It is small (84 M weights against SD 1.5's 860 M UNet), runs once
  per image, and its convolutions write pixels: rounding there shows as banding and ringing.
- Any layer whose input width is not a multiple of ``group_size`` (MLX's requirement) or with
  fewer than ``MIN_WEIGHTS`` weights (too small to matter; only tiny test models have them).

How a quantized layer runs is chosen at load time (:func:`runtime_mode`), since the artifact
is the same for all of them:

- ``"fused"``: ``nn.QuantizedLinear`` (MLX's fused quantized matmul) and convolutions that
  dequantize their kernel per call. Weights stay small in memory. The fast path on Apple GPUs.
- ``"on-the-fly"``: linears and convolutions both dequantize their weight per call and use
  the ordinary float matmul/conv. Small in memory; on a CPU it costs the dequantization.
- ``"at-load"``: weights are dequantized once when the model loads. As fast as an unquantized
  model, as large in memory; quantization then only shrinks the download and the disk.

On a CPU MLX's quantized and half-precision matmuls have no optimized kernel (measured on the
x86 build machine: a 8192×640×2560 product took 0.43-0.66 s in fp32 through BLAS, 16 s as
``quantized_matmul``, 15 s in fp16), so the default there is ``"at-load"`` into the compute
dtype; with an accelerator it is ``"fused"``. ``EDGEGEN_QUANT_RUNTIME`` overrides the choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from edgegen.device import on_gpu
from edgegen.errors import ModelError, UsageError

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)
MODE = "affine"
MIN_WEIGHTS = 4096  # layers smaller than this stay float: nothing to save, only error to add
VOICE_MIN_WEIGHTS = 16384  # a voice's small kernels stay float (its size is in the big ones)
TEXT_ENCODER_MIN_BITS = 8
RUNTIMES = ("fused", "on-the-fly", "at-load")
RUNTIME_ENV = "EDGEGEN_QUANT_RUNTIME"

# Module paths kept in float, per component, with the reason recorded in the manifest.
_KEEP_UNET = {
    "conv_in": "first layer (latent input)",
    "conv_out": "last layer (noise prediction)",
    "time_embedding": "timestep embedding modulates every resnet",
    "add_embedding": "SDXL size/pooled-text embedding modulates every resnet",
}


@dataclass(frozen=True)
class QuantPlan:
    """The layers of one component that are quantized, and why the others are not."""

    bits: int
    group_size: int
    layers: tuple[str, ...]  # module paths, e.g. "down_blocks.1.resnets.0.conv1"
    kept: dict[str, str] = field(default_factory=dict)  # module path → reason it stays float
    mode: str = MODE
    # How the packed tensors are named: "module" (``PATH.weight``, ``PATH.scales``,
    # ``PATH.biases``, what edgegen writes) or "weight" (``PATH.weight.scales``, as format-1
    # voices were written; read, never written).
    naming: str = "module"
    legacy_record: dict[str, Any] | None = field(default=None, compare=False)  # as read

    def packed(self, path: str) -> tuple[str, str, str]:
        """The names of layer ``path``'s packed weight, scales and biases."""
        base = f"{path}.weight." if self.naming == "weight" else f"{path}."
        return f"{path}.weight", f"{base}scales", f"{base}biases"

    def to_manifest(self) -> dict[str, Any]:
        if self.legacy_record is not None:  # a format-1 voice's record, written back as read
            return dict(self.legacy_record)
        return {
            "mode": self.mode,
            "bits": self.bits,
            "group_size": self.group_size,
            "layers": list(self.layers),
            "kept": dict(self.kept),
        }

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> QuantPlan:
        """The plan a manifest records; also reads format-1 voices' record, which listed the
        quantized parameters (``"keys": ["dec.ups.0.weight", ...]``) instead of layers."""
        try:
            legacy = "layers" not in d and "keys" in d
            keys = list(d["keys"] if legacy else d["layers"])
            if legacy and not all(k.endswith(".weight") for k in keys):
                raise ValueError("a quantized key is not a weight")
            plan = cls(
                bits=int(d["bits"]),
                group_size=int(d["group_size"]),
                layers=tuple(k.removesuffix(".weight") for k in keys) if legacy else tuple(keys),
                kept=dict(d.get("kept", {})),
                mode=str(d.get("mode", MODE)),
                naming="weight" if legacy else "module",
                legacy_record=dict(d) if legacy else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelError(f"manifest quantization entry is malformed: {e}") from e
        if plan.mode != MODE or plan.bits not in BITS:
            raise ModelError(
                f"manifest quantization {plan.mode!r} {plan.bits}-bit is not supported "
                f"(edgegen reads {MODE!r} with bits {BITS})"
            )
        return plan


def check_options(bits: int | None, group_size: int) -> None:
    if bits is not None and bits not in BITS:
        raise UsageError(f"quantization to {bits} bits is not supported; choose one of {BITS}")
    if group_size not in GROUP_SIZES:
        raise UsageError(
            f"quantization group size {group_size} is not supported; choose one of {GROUP_SIZES}"
        )


def _in_features(module: nn.Module) -> int:
    w = module.weight
    return int(w.shape[-1]) if isinstance(module, nn.Linear) else int(w.size // w.shape[0])


def plan(component: str, model: nn.Module, bits: int, group_size: int) -> QuantPlan | None:
    """Decide which layers of ``model`` (component ``component``) to quantize; None for a
    component that is never quantized (the VAE). The plan may list no layers at all."""
    if component == "vae":
        return None
    if component == "vits":
        return _plan_voice(model, bits, group_size)
    text = component.startswith("text_encoder")
    if text:
        bits = max(bits, TEXT_ENCODER_MIN_BITS)
    layers, kept = [], {}
    for path, module in model.named_modules():
        kinds = (nn.Linear,) if text else (nn.Linear, nn.Conv2d)
        if not isinstance(module, kinds):
            if isinstance(module, nn.Embedding):
                kept[path] = "embedding lookup table"
            continue
        top = path.split(".")[0]
        if not text and top in _KEEP_UNET:
            kept[path] = _KEEP_UNET[top]
        elif _in_features(module) % group_size:
            kept[path] = f"input width {_in_features(module)} not a multiple of {group_size}"
        elif module.weight.size < MIN_WEIGHTS:
            kept[path] = f"small ({module.weight.size} weights)"
        else:
            layers.append(path)
    return QuantPlan(bits, group_size, tuple(sorted(layers)), kept)


def _plan_voice(model: nn.Module, bits: int, group_size: int) -> QuantPlan:
    """A Piper voice: every 1-D convolution kernel (MLX layout (C_out, K, C_in), quantized as
    (C_out, K·C_in) rows) of at least ``VOICE_MIN_WEIGHTS`` weights. The rest (norms, flows'
    small projections, the relative-position tables) stays float32."""
    layers, kept = [], {}
    for path, module in model.named_modules():
        w = module.get("weight") if isinstance(module, nn.Module) else None
        if not isinstance(w, mx.array) or w.ndim != 3:
            continue
        width = int(w.size // w.shape[0])
        if w.size < VOICE_MIN_WEIGHTS:
            kept[path] = f"small ({w.size} weights)"
        elif width % group_size:
            kept[path] = f"input width {width} not a multiple of {group_size}"
        else:
            layers.append(path)
    return QuantPlan(bits, group_size, tuple(sorted(layers)), kept)


def quantize_weights(
    weights: dict[str, mx.array], qplan: QuantPlan, dtype: mx.Dtype
) -> dict[str, mx.array]:
    """Replace each planned layer's ``.weight`` with packed ``weight``/``scales``/``biases``.

    Quantization reads the float32 source weights, so the only rounding is the quantizer's;
    scales and biases are stored in ``dtype``. Convolution kernels (O, kh, kw, I) are
    quantized as (O, kh·kw·I) rows: each group spans input channels of one kernel position.
    """
    out = dict(weights)
    for path in qplan.layers:
        weight, scales_name, biases_name = qplan.packed(path)
        w = out.pop(weight).astype(mx.float32)
        q, scales, biases = mx.quantize(
            w.reshape(w.shape[0], -1), qplan.group_size, qplan.bits, mode=qplan.mode
        )
        out[weight] = q
        out[scales_name] = scales.astype(dtype)
        out[biases_name] = biases.astype(dtype)
    return out


def dequantize(
    w: mx.array, scales: mx.array, biases: mx.array, group_size: int, bits: int
) -> mx.array:
    """``mx.dequantize`` for 4 and 8 bits as plain array ops (same values, about twice as fast
    on the CPU build); the result has the scales' dtype and shape (rows, input width)."""
    u = w.view(mx.uint8)
    if bits == 4:
        # Each byte holds two weights, the low nibble first.
        u = mx.stack([u & 0xF, u >> 4], axis=-1)
    rows = u.shape[0]
    q = u.reshape(rows, -1, group_size).astype(scales.dtype)
    return (q * scales[..., None] + biases[..., None]).reshape(rows, -1)


class QuantizedConv2d(nn.Module):
    """A ``Conv2d`` whose kernel is stored quantized and dequantized on each call."""

    def __init__(self, conv: nn.Conv2d, group_size: int, bits: int):
        super().__init__()
        self.kernel_shape = tuple(conv.weight.shape)  # (O, kh, kw, I)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = mx.quantize(
            conv.weight.reshape(self.kernel_shape[0], -1), group_size, bits
        )
        if "bias" in conv:
            self.bias = conv.bias
        self.freeze()

    def __call__(self, x: mx.array) -> mx.array:
        w = dequantize(self.weight, self.scales, self.biases, self.group_size, self.bits)
        y = mx.conv2d(
            x,
            w.reshape(self.kernel_shape).astype(x.dtype),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        return y + self.bias if "bias" in self else y


class DequantLinear(nn.Module):
    """A ``Linear`` stored quantized, dequantized per call onto the ordinary (BLAS) matmul."""

    def __init__(self, linear: nn.Linear, group_size: int, bits: int):
        super().__init__()
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = mx.quantize(linear.weight, group_size, bits)
        if "bias" in linear:
            self.bias = linear.bias
        self.freeze()

    def __call__(self, x: mx.array) -> mx.array:
        w = dequantize(self.weight, self.scales, self.biases, self.group_size, self.bits)
        y = x @ w.astype(x.dtype).T
        return y + self.bias if "bias" in self else y


def runtime_mode() -> str:
    """How quantized layers run here: ``EDGEGEN_QUANT_RUNTIME``, else by device (module doc)."""
    chosen = os.environ.get(RUNTIME_ENV)
    if chosen:
        if chosen not in RUNTIMES:
            raise UsageError(f"{RUNTIME_ENV}={chosen!r} is not valid; choose one of {RUNTIMES}")
        return chosen
    return "fused" if on_gpu() else "at-load"


def apply_plan(model: nn.Module, qplan: QuantPlan, runtime: str) -> None:
    """Give ``model`` the quantized structure of ``qplan`` so the artifact's packed weights load
    straight into it (``runtime`` ``"fused"`` or ``"on-the-fly"``; ``"at-load"`` keeps the
    float structure and uses :func:`dequantize_weights` instead)."""
    modules = dict(model.named_modules())
    wanted = set(qplan.layers)
    missing = sorted(wanted - modules.keys())
    if missing:
        raise ModelError(f"quantized layer {missing[0]!r} is not in the model built from config")

    def swap(path: str, m: nn.Module) -> nn.Module:
        if path not in wanted:
            return m
        if isinstance(m, nn.Conv2d):
            return QuantizedConv2d(m, qplan.group_size, qplan.bits)
        if isinstance(m, nn.Linear):
            if runtime == "fused":
                return nn.QuantizedLinear.from_linear(m, qplan.group_size, qplan.bits)
            return DequantLinear(m, qplan.group_size, qplan.bits)
        raise ModelError(f"layer {path!r} is a {type(m).__name__}, which cannot be quantized")

    from mlx.utils import tree_map_with_path

    leaves = tree_map_with_path(swap, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)


def dequantize_weights(
    weights: dict[str, mx.array],
    qplan: QuantPlan,
    shapes: dict[str, tuple[int, ...]],
    dtype: mx.Dtype,
) -> dict[str, mx.array]:
    """Packed weights back to float ``dtype`` tensors of the float model's ``shapes``."""
    out = dict(weights)
    for path in qplan.layers:
        weight, scales, biases = qplan.packed(path)
        try:
            w = dequantize(
                out.pop(weight),
                out.pop(scales).astype(mx.float32),
                out.pop(biases).astype(mx.float32),
                qplan.group_size,
                qplan.bits,
            )
        except KeyError as e:
            raise ModelError(f"quantized layer {path!r} lacks its packed tensor {e}") from None
        out[weight] = w.reshape(shapes[weight]).astype(dtype)
    return out
