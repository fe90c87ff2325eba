"""The artifact manifest: one typed, versioned record for every kind of converted model.

Every artifact in the store (a diffusion model, a voice, later an upscaler) is a folder with a
``manifest.json`` that says what it is and, per target (``mlx`` now, ``coreml`` next), which
file holds each component, in which dtype and quantization. :class:`Manifest` is that file as a
frozen dataclass: :meth:`Manifest.read` parses and validates it (one-line
:class:`~edgegen.errors.ModelError` naming the folder and the bad field), :meth:`Manifest.write`
writes it, and nothing else in edgegen reads the JSON.

The JSON, format version 1::

    format          "edgegen-model"
    format_version  1
    name, kind      store name; "diffusion" | "voice" | "upscaler"
    family          "sd1" | "sd2" | "sdxl" | "piper-vits" | ...
    edgegen_version, created (ISO 8601 UTC)
    source          {"path": str, "files": {relative name: sha256}, ...}
    conversion      the options it was converted with (diffusion)
    targets         {"mlx": {"layout", "components": {name: {"file", "dtype", "quantization",
                     "bytes", "sha256", "parameters"}}, "files": {rel: {"bytes", "sha256"}}}}
    config          the model's own configuration, per component (family-specific)
    defaults, quality, license, model_card, bytes    optional

A reader refuses a newer ``format_version`` ("upgrade edgegen") and keeps reading every older
one: a future version 2 adds its step to :func:`_upgrade`, and tests/artifacts keeps a model
and a voice written by each version. Keys this version does not know are kept, untouched, in
:attr:`Manifest.extra`, so reading and writing a manifest never loses data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgegen.converters.components import FAMILIES
from edgegen.converters.quantize import QuantPlan
from edgegen.errors import ModelError
from edgegen.models.esrgan import ARCHITECTURES as UPSCALER_ARCHITECTURES

FORMAT = "edgegen-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("diffusion", "voice", "upscaler")
DTYPE_NAMES = ("float32", "float16", "bfloat16")

# What loading needs, per kind: the family names known and the components of each target.
_REQUIRED = {
    "diffusion": FAMILIES,
    "voice": {"piper-vits": ("vits",)},
    "upscaler": {arch: ("net",) for arch in UPSCALER_ARCHITECTURES},
}


class _Invalid(Exception):
    """A field that fails validation; :meth:`Manifest.from_dict` adds where it was read."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _Invalid(what)


@dataclass(frozen=True)
class Component:
    """One component's weights in one target."""

    file: str
    dtype: str  # what float tensors are stored in: "float32" | "float16" | "bfloat16"
    bytes: int = 0
    sha256: str | None = None
    parameters: int = 0
    quantization: QuantPlan | None = None
    layout: str | None = None

    @classmethod
    def from_dict(cls, name: str, d: Any) -> Component:
        _need(isinstance(d, dict) and isinstance(d.get("file"), str), f"{name!r} has no file")
        _need(
            isinstance(d.get("dtype"), str) and d["dtype"] in DTYPE_NAMES,
            f"{name!r} has unknown dtype {d.get('dtype')!r}",
        )
        quant = d.get("quantization")
        try:
            plan = QuantPlan.from_manifest(quant) if quant else None
        except ModelError as e:
            raise _Invalid(f"{name!r}: {e}") from e
        return cls(
            file=d["file"],
            dtype=d["dtype"],
            bytes=int(d.get("bytes", 0)),
            sha256=d.get("sha256"),
            parameters=int(d.get("parameters", 0)),
            quantization=plan,
            layout=d.get("layout"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"file": self.file, "dtype": self.dtype}
        if self.layout is not None:
            d["layout"] = self.layout
        d["quantization"] = self.quantization.to_manifest() if self.quantization else None
        d["parameters"] = self.parameters
        d["bytes"] = self.bytes
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        return d


@dataclass(frozen=True)
class Target:
    """What one runtime (MLX, Core ML) loads: its components and every file it vouches for."""

    components: dict[str, Component]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel → {bytes, sha256}
    layout: str | None = None

    @classmethod
    def from_dict(cls, name: str, d: Any) -> Target:
        _need(isinstance(d, dict), f"target {name!r} is not an object")
        comps = d.get("components")
        _need(isinstance(comps, dict), f"has no {name.upper()} target components")
        files = d.get("files") or {}
        _need(isinstance(files, dict), f"target {name!r} files is not an object")
        return cls(
            components={c: Component.from_dict(c, e) for c, e in comps.items()},
            files=files,
            layout=d.get("layout"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {} if self.layout is None else {"layout": self.layout}
        d["components"] = {c: e.to_dict() for c, e in self.components.items()}
        if self.files:
            d["files"] = self.files
        return d


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    family: str
    targets: dict[str, Target]
    config: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    edgegen_version: str = "?"
    created: str = "?"
    conversion: dict[str, Any] | None = None
    defaults: dict[str, Any] | None = None  # generation defaults (a Turbo model: 1 step)
    quality: dict[str, Any] | None = None
    license: str | None = None
    model_card: str | None = None
    bytes: int | None = None  # the whole artifact on disk, as written
    format_version: int = FORMAT_VERSION  # the version it was written in
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def mlx(self) -> Target:
        return self.target("mlx")

    def target(self, name: str) -> Target:
        if name not in self.targets:
            have = ", ".join(self.targets) or "none"
            raise ModelError(f"model {self.name!r} has no {name} target (it has: {have})")
        return self.targets[name]

    def component(self, name: str, target: str = "mlx") -> Component:
        comps = self.target(target).components
        if name not in comps:
            raise ModelError(f"model {self.name!r} has no {name} component")
        return comps[name]

    def file_hashes(self) -> dict[str, str]:
        """Relative path → sha256 of every file the manifest vouches for, over all targets."""
        expected: dict[str, str] = {}
        for target in self.targets.values():
            for rel, info in target.files.items():
                expected[rel] = info["sha256"]
            for entry in target.components.values():
                if entry.sha256:
                    expected.setdefault(entry.file, entry.sha256)
        return expected

    # Reading and writing.
    @classmethod
    def from_dict(cls, data: Any, where: str) -> Manifest:
        """Validate ``data`` (a parsed manifest of any version up to this one) read from the
        artifact folder ``where``."""
        file = str(Path(where) / MANIFEST)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"{file!r} is not an edgegen manifest (format != {FORMAT!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ModelError(f"{file!r} has invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ModelError(
                f"model {data.get('name')!r} uses format version {version}, newer than this "
                f"edgegen reads (≤ {FORMAT_VERSION}); upgrade edgegen"
            )
        data = _upgrade(dict(data), version)
        try:
            return cls._parse(data, version)
        except _Invalid as e:
            raise ModelError(f"{where}: manifest {e}") from None

    @classmethod
    def _parse(cls, d: dict[str, Any], version: int) -> Manifest:
        kind, family = d.get("kind"), d.get("family")
        _need(
            isinstance(kind, str) and kind in KINDS,
            f"kind {kind!r} is unknown (valid: {', '.join(KINDS)})",
        )
        _need(isinstance(d.get("name"), str) and d["name"] != "", "has no name")
        families = _REQUIRED.get(kind)
        _need(
            families is None or (isinstance(family, str) and family in families),
            f"family {family!r} is unknown",
        )
        config = d.get("config")
        _need(isinstance(config, dict), "has no config")
        targets = d.get("targets")
        _need(isinstance(targets, dict) and "mlx" in targets, "has no MLX target components")
        parsed = {t: Target.from_dict(t, v) for t, v in targets.items()}
        for comp in (families or {}).get(family, ()):
            _need(comp in parsed["mlx"].components, f"lacks component {comp!r}")
            if kind == "diffusion":
                _need(isinstance(config.get(comp), dict), f"lacks the config of {comp!r}")
        if kind == "diffusion":
            _need(isinstance(config.get("scheduler"), dict), "lacks the scheduler config")
        known = {f for f in cls.__dataclass_fields__ if f not in ("targets", "extra")}
        extra = {k: v for k, v in d.items() if k not in known | {"format", "targets"}}
        return cls(
            name=d["name"],
            kind=kind,
            family=family,
            targets=parsed,
            config=config,
            source=d.get("source") or {},
            edgegen_version=str(d.get("edgegen_version", "?")),
            created=str(d.get("created", "?")),
            conversion=d.get("conversion"),
            defaults=d.get("defaults"),
            quality=d.get("quality"),
            license=d.get("license"),
            model_card=d.get("model_card"),
            bytes=d.get("bytes"),
            format_version=version,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, in the current format version."""
        d: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "edgegen_version": self.edgegen_version,
            "created": self.created,
            "source": self.source,
        }
        if self.conversion is not None:
            d["conversion"] = self.conversion
        d["targets"] = {t: v.to_dict() for t, v in self.targets.items()}
        d["config"] = self.config
        for key in ("defaults", "quality", "license", "model_card", "bytes"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return {**d, **self.extra}

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read and validate ``directory/manifest.json``."""
        path = Path(directory) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ModelError(
                f"{str(directory)!r} has no {MANIFEST}; it is not an edgegen model"
            ) from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{str(path)!r} is not valid JSON: {e}") from e
        except OSError as e:
            raise ModelError(f"cannot read {str(path)!r}: {e.strerror}") from e
        return cls.from_dict(data, str(directory))

    def write(self, directory: Path) -> None:
        (Path(directory) / MANIFEST).write_text(
            json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def _upgrade(data: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring a parsed manifest of ``version`` to the current shape, one version step at a time.

    Version 1 is current, so there is no step yet; version 2 adds ``if version == 1: ...``
    here. (Format-1 voices record their quantization by parameter key; :class:`QuantPlan`
    reads that older record itself, since it is one field's shape, not the manifest's.)
    """
    return data


def is_artifact(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()
