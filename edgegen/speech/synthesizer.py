"""Read a voice's synthesizer (the VITS model, no phonemizer) from a store artifact or a Piper
``.onnx``: what a :class:`~edgegen.speech.voice.Voice` and its helper processes both load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgegen.converters.manifest import Manifest
from edgegen.converters.quantize import QuantPlan
from edgegen.errors import ModelError, UnsupportedModelError


def _model(config: dict, arrays: dict, qplan: QuantPlan | None = None):
    import mlx.core as mx

    from edgegen.converters.mapping import parameter_shapes
    from edgegen.converters.quantize import dequantize_weights
    from edgegen.models.vits import Vits, VitsConfig

    try:
        cfg = VitsConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"voice config is invalid: {e}") from e
    model = Vits(cfg)
    if qplan is not None and qplan.layers:
        arrays = dequantize_weights(arrays, qplan, parameter_shapes(model), mx.float32)
    try:
        model.load_weights(list(arrays.items()), strict=True)
    except ValueError as e:
        raise ModelError(f"voice weights do not match its config: {e}") from e
    return model


def read_artifact(directory: Path) -> tuple[Any, dict, str]:
    """The synthesizer, voice config and name of a store artifact directory."""
    import mlx.core as mx

    manifest = Manifest.read(directory)
    if manifest.kind != "voice" or manifest.family != "piper-vits":
        raise UnsupportedModelError(
            f"model {manifest.name!r} is a {manifest.kind!r}/{manifest.family!r}, "
            "not a piper-vits voice"
        )
    component = manifest.component("vits")
    config = dict(manifest.config)
    voice_path = Path(directory) / config.pop("voice_config", "voice.json")
    weights = Path(directory) / component.file
    try:
        voice_json = json.loads(voice_path.read_text(encoding="utf-8"))
        arrays = mx.load(str(weights))
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"voice {manifest.name!r} is incomplete or corrupt: {e}") from e
    return _model(config, arrays, component.quantization), voice_json, manifest.name


def read_onnx(path: Path) -> tuple[Any, dict]:
    """The synthesizer and voice config of ``VOICE.onnx``, converted in memory."""
    import mlx.core as mx

    from edgegen.converters.piper import load_piper_onnx

    cfg, weights, voice_json = load_piper_onnx(path)
    arrays = {k: mx.array(v) for k, v in weights.items()}
    return _model(cfg.to_dict(), arrays), voice_json


def load_model(source: tuple[str, str]):
    """Just the synthesizer (no phonemizer) of a voice's ``source`` (``Voice.source``):
    what a helper process needs to synthesize sentences for it."""
    kind, path = source
    if kind == "artifact":
        return read_artifact(Path(path))[0]
    return read_onnx(Path(path))[0]
