"""Declarative, strict weight mapping: source checkpoint keys → MLX parameter paths.

A mapping is a list of :class:`Rule` (a regex over source keys, a target template and a named
transform). :func:`map_weights` applies it strictly, in the spirit of nanoGPT's
``from_pretrained``: every source key is consumed by exactly one rule, every target parameter is
filled exactly once, and every shape is checked. Any violation raises
:class:`~edgegen.errors.WeightMappingError` naming the offending key, never a silent skip.

Rules are data::

    Rule(r"(.*)\\.conv\\.weight", r"\\1.conv.weight", "conv2d")   # OIHW → OHWI
    Rule(r".*\\.position_ids", None)                              # a buffer, dropped on purpose
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import mlx.core as mx

from edgegen.errors import WeightMappingError


def _conv2d(a: mx.array) -> mx.array:
    # PyTorch Conv2d weights are (out, in, kh, kw); MLX wants (out, kh, kw, in).
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _conv1d(a: mx.array) -> mx.array:
    # PyTorch Conv1d weights are (out, in, k); MLX wants (out, k, in).
    return a.transpose(0, 2, 1) if a.ndim == 3 else a


def _linear(a: mx.array) -> mx.array:
    # Some checkpoints store linears as 1×1 convs (SD1 proj_in/proj_out): (out, in, 1, 1).
    return a.reshape(a.shape[0], a.shape[1]) if a.ndim == 4 else a


TRANSFORMS: dict[str, Callable[[mx.array], mx.array]] = {
    "identity": lambda a: a,
    "conv2d": _conv2d,
    "conv1d": _conv1d,
    "linear": _linear,
}


@dataclass(frozen=True)
class Rule:
    source: str  # regular expression, matched against the whole source key
    target: str | None  # re.sub-style template; None drops the key deliberately (buffers)
    transform: str = "identity"  # a key of TRANSFORMS
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"unknown transform {self.transform!r}; choose from {list(TRANSFORMS)}"
            )
        object.__setattr__(self, "_compiled", re.compile(self.source))

    def apply(self, key: str) -> str | None | bool:
        """Target name for ``key``; ``None`` if dropped; ``False`` if this rule does not match."""
        m = self._compiled.fullmatch(key)
        if m is None:
            return False
        return None if self.target is None else m.expand(self.target)


def map_weights(
    source: Mapping[str, mx.array],
    rules: Sequence[Rule],
    target_shapes: Mapping[str, tuple[int, ...]],
    component: str,
) -> dict[str, mx.array]:
    """Map ``source`` onto ``target_shapes`` (MLX parameter path → shape) with ``rules``.

    The first rule whose pattern matches a key wins. ``component`` names the model part in
    error messages (e.g. ``"unet"``).
    """
    out: dict[str, mx.array] = {}
    origin: dict[str, str] = {}
    for key, value in source.items():
        for rule in rules:
            target = rule.apply(key)
            if target is False:
                continue
            break
        else:
            raise WeightMappingError(f"{component}: unexpected weight {key!r} (no mapping rule)")
        if target is None:
            continue
        if target not in target_shapes:
            raise WeightMappingError(
                f"{component}: weight {key!r} maps to {target!r}, which the model does not have"
            )
        if target in out:
            raise WeightMappingError(
                f"{component}: {key!r} and {origin[target]!r} both map to {target!r}"
            )
        value = TRANSFORMS[rule.transform](value)
        want = tuple(target_shapes[target])
        if tuple(value.shape) != want:
            raise WeightMappingError(
                f"{component}: weight {key!r} has shape {tuple(value.shape)} after "
                f"{rule.transform!r}, but {target!r} needs {want}"
            )
        out[target] = value
        origin[target] = key
    missing = [t for t in target_shapes if t not in out]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise WeightMappingError(f"{component}: checkpoint lacks {shown}{more}")
    return out


def parameter_shapes(module) -> dict[str, tuple[int, ...]]:
    """Flat ``{path: shape}`` of an MLX module's parameters."""
    from mlx.utils import tree_flatten

    return {k: tuple(v.shape) for k, v in tree_flatten(module.parameters())}


def load_into(module, weights: Mapping[str, mx.array]) -> None:
    """Assign mapped ``weights`` (flat paths) to ``module`` in place."""
    from mlx.utils import tree_unflatten

    module.update(tree_unflatten(list(weights.items())))
