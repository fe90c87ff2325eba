"""Build a :class:`Voice` from a store artifact or directly from a Piper ``.onnx``."""

from __future__ import annotations

from pathlib import Path

from edgegen.speech.synthesizer import read_artifact, read_onnx
from edgegen.speech.voice import Voice


def load_artifact(directory: Path) -> Voice:
    """A voice from a store artifact directory (manifest + vits.safetensors + voice.json)."""
    model, voice_json, name = read_artifact(directory)
    return Voice(model, voice_json, name, source=("artifact", str(directory)))


def load_onnx(path: Path) -> Voice:
    """A voice straight from ``VOICE.onnx`` + ``VOICE.onnx.json``, converted in memory."""
    model, voice_json = read_onnx(path)
    return Voice(model, voice_json, Path(path).stem, source=("onnx", str(path)))
