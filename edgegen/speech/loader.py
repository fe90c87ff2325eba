"""Build a :class:`Voice` from a store artifact or directly from a Piper ``.onnx``."""

from __future__ import annotations

import json
from pathlib import Path

from edgegen.errors import ModelError, UnsupportedModelError
from edgegen.speech.voice import Voice


def _model(config: dict, arrays: dict):
    from edgegen.models.vits import Vits, VitsConfig

    try:
        cfg = VitsConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"voice config is invalid: {e}") from e
    model = Vits(cfg)
    try:
        model.load_weights(list(arrays.items()), strict=True)
    except ValueError as e:
        raise ModelError(f"voice weights do not match its config: {e}") from e
    return model


def load_artifact(directory: Path) -> Voice:
    """A voice from a store artifact directory (manifest + vits.safetensors + voice.json)."""
    model, voice_json, name = _read_artifact(directory)
    return Voice(model, voice_json, name, source=("artifact", str(directory)))


def _read_artifact(directory: Path):
    import mlx.core as mx

    from edgegen import store
    from edgegen.converters.piper import dequantize_weights

    manifest = store.read_manifest(directory)
    if manifest.get("kind") != "voice" or manifest.get("family") != "piper-vits":
        raise UnsupportedModelError(
            f"model {manifest.get('name')!r} is a {manifest.get('kind')!r}/"
            f"{manifest.get('family')!r}, not a piper-vits voice"
        )
    try:
        component = manifest["targets"]["mlx"]["components"]["vits"]
        config = dict(manifest["config"])
    except KeyError as e:
        raise ModelError(f"voice {manifest.get('name')!r} manifest lacks {e}") from e
    voice_path = Path(directory) / config.pop("voice_config", "voice.json")
    weights = Path(directory) / component["file"]
    try:
        voice_json = json.loads(voice_path.read_text(encoding="utf-8"))
        arrays = mx.load(str(weights))
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"voice {manifest['name']!r} is incomplete or corrupt: {e}") from e
    arrays = dequantize_weights(arrays, component.get("quantization") or {})
    return _model(config, arrays), voice_json, manifest["name"]


def load_onnx(path: Path) -> Voice:
    """A voice straight from ``VOICE.onnx`` + ``VOICE.onnx.json``, converted in memory."""
    model, voice_json = _read_onnx(path)
    return Voice(model, voice_json, Path(path).stem, source=("onnx", str(path)))


def _read_onnx(path: Path):
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
        return _read_artifact(Path(path))[0]
    return _read_onnx(Path(path))[0]
