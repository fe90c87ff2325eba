"""Convert a Piper voice into the store: weights read and checked by ``converters/piper.py``,
then a self-check (the voice speaks; a quantized one stays close to the float one) and the
artifact written atomically (``vits.safetensors``, the phoneme config, licence and model card).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from edgegen import __version__, store
from edgegen.converters.manifest import Component, Manifest, Target
from edgegen.converters.mapping import parameter_shapes
from edgegen.converters.piper import check_ids, check_quantize, load_piper_onnx, param_count
from edgegen.converters.quantize import dequantize_weights, plan, quantize_weights
from edgegen.converters.safetensors_io import write_file
from edgegen.errors import QualityError, UsageError
from edgegen.fileio import sha256_file
from edgegen.models.vits import Vits, VitsConfig

GROUP_SIZE = 64  # weights sharing one scale and bias in a quantized voice


def _check_audio(model, ids: list[int]) -> np.ndarray:
    audio, _ = model.synthesize(ids, noise_scale=0.0, noise_w=0.0)
    if not np.isfinite(audio).all() or float(np.sqrt(np.mean(audio**2))) < 1e-3:
        raise QualityError("converted voice produced silent or non-finite audio; not stored")
    return audio


def convert_to_store(
    onnx_path: Path, name: str, quantize: int | None = None, force: bool = False
) -> Path:
    """Convert a Piper voice into the store as ``name``; returns the artifact directory."""
    check_quantize(quantize)
    onnx_path = Path(onnx_path)
    store.check_name(name)
    if store.exists(name) and not force:
        raise UsageError(
            f"voice {name!r} already exists in the store", option="force",
            advice="pass {} to replace it",
        )  # fmt: skip
    cfg, weights, voice_json = load_piper_onnx(onnx_path)
    json_path = Path(f"{onnx_path}.json")
    card_path = onnx_path.parent / "MODEL_CARD"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    source = {
        "path": str(onnx_path),
        "files": {p.name: sha256_file(p) for p in (onnx_path, json_path)},
    }
    return write_voice(name, cfg, weights, voice_json, source, card, quantize, force)


def write_voice(
    name: str,
    cfg: VitsConfig,
    weights: dict[str, np.ndarray],
    voice_json: dict[str, Any],
    source: dict[str, Any],
    card: str = "",
    quantize: int | None = None,
    force: bool = False,
) -> Path:
    """Check a voice (MLX layout ``weights`` for ``cfg``) and write it into the store."""
    check_quantize(quantize)
    # Self-check: the float model speaks; a quantized one must stay close to it.
    model = Vits(cfg)
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
    reference = _check_audio(model, check_ids(voice_json))
    quality: dict[str, Any] = {"check": "noise-free synthesis of a fixed phrase", "rms_ok": True}
    arrays = {k: mx.array(v) for k, v in weights.items()}
    qplan = plan("vits", model, quantize, GROUP_SIZE) if quantize else None
    if qplan is not None:
        arrays = quantize_weights(arrays, qplan, mx.float32)
        qmodel = Vits(cfg)
        deq = dequantize_weights(arrays, qplan, parameter_shapes(qmodel), mx.float32)
        qmodel.load_weights(list(deq.items()), strict=True)
        audio = _check_audio(qmodel, check_ids(voice_json))
        n = min(len(audio), len(reference))
        corr = float(np.corrcoef(audio[:n], reference[:n])[0, 1])
        quality["correlation_vs_float"] = round(corr, 5)
        if corr < 0.95:
            raise QualityError(
                f"{quantize}-bit voice correlates {corr:.3f} with the float voice (< 0.95)",
                option="quantize",
                advice="use {} 8 or none",
            )

    with store.new_artifact(name, force=force) as tmp:
        path = tmp / "vits.safetensors"
        size = write_file(path, arrays, {"format": "mlx", "component": "vits"})
        (tmp / "voice.json").write_text(json.dumps(voice_json, ensure_ascii=False), "utf-8")
        component = Component(
            file=path.name,
            dtype="float32",
            layout="mlx (C_out, K, C_in)",
            quantization=qplan,
            bytes=size,
            sha256=sha256_file(path),
            parameters=param_count(weights),
        )
        Manifest(
            name=name,
            kind="voice",
            family="piper-vits",
            edgegen_version=__version__,
            created=store.now_iso(),
            source=source,
            targets={"mlx": Target({"vits": component})},
            config={**cfg.to_dict(), "voice_config": "voice.json"},
            license=_license(voice_json, card),
            model_card=card,
            quality=quality,
        ).write(tmp)
    return store.models_dir() / name


def _license(voice_json: dict[str, Any], card: str) -> str:
    """The voice's license: the config's own field, else the model card's "License:" line."""
    if lic := voice_json.get("license"):
        return str(lic)
    if m := re.search(r"License:\s*(.+)", card):
        return m.group(1).strip()
    return "unknown (no license in the voice config or model card)"
