"""``edgegen models list|info|verify|rm``: look after the local model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgegen.cli.convert import human_bytes, precision
from edgegen.cli.options import examples


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _precision(manifest: dict[str, Any]) -> str:
    """One word for a whole model: the UNet's (or first component's) precision."""
    comps = manifest.get("targets", {}).get("mlx", {}).get("components") or {}
    if not comps:
        return "-"
    return precision(comps.get("unet") or next(iter(comps.values())))


def _expected_files(manifest: dict[str, Any]) -> dict[str, str]:
    """relative path → sha256 of every file the manifest vouches for, over all targets."""
    expected: dict[str, str] = {}
    for target in (manifest.get("targets") or {}).values():
        for rel, info in (target.get("files") or {}).items():
            expected[rel] = info["sha256"]
        for entry in (target.get("components") or {}).values():
            if isinstance(entry, dict) and "file" in entry and "sha256" in entry:
                expected.setdefault(entry["file"], entry["sha256"])
    return expected


@click.group(
    "models",
    epilog=examples(
        "edgegen models list", "edgegen models info sd15-q8", "edgegen models rm sd15-q8"
    ),
)
def models() -> None:
    """List, inspect, verify and remove converted models in the store."""


@models.command(
    "list",
    epilog=examples(
        "edgegen models list",
        "EDGEGEN_HOME=/Volumes/ssd/edgegen edgegen models list    # another store",
    ),
)
def list_() -> None:
    """Every model in the store."""
    from rich.console import Console
    from rich.table import Table

    from edgegen import store

    console = Console()
    found = store.list_models()
    if not found:
        console.print(f"No models in {store.models_dir()} (add one with `edgegen convert`).")
        return
    table = Table(show_edge=False)
    for col in ("name", "kind", "family", "precision", "size", "created"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for path, m in found:
        table.add_row(
            m.get("name", path.name),
            m.get("kind", "?"),
            m.get("family", "?"),
            _precision(m),
            human_bytes(_disk_bytes(path)),
            str(m.get("created", "?")).replace("T", " ").removesuffix("+00:00"),
        )
    console.print(table)


@models.command(
    "info", epilog=examples("edgegen models info sd15-q8", "edgegen models info en_us-joe-medium")
)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(name: str, as_json: bool) -> None:
    """What NAME is: source, conversion, per-component precision, quality."""
    from rich.console import Console
    from rich.table import Table

    from edgegen import store

    path = store.find(name)
    m = store.read_manifest(path)
    if as_json:
        click.echo(json.dumps(m, indent=1, ensure_ascii=False))
        return
    console = Console()
    source = m.get("source", {})
    console.print(f"[bold]{m['name']}[/bold]  {m.get('kind', '?')} / {m.get('family', '?')}")
    console.print(f"path:     {path}")
    console.print(
        f"format:   {m['format_version']} (edgegen {m.get('edgegen_version', '?')}), "
        f"created {m.get('created', '?')}"
    )
    console.print(f"source:   {source.get('path', '?')} ({source.get('kind', '?')})")
    console.print(f"size:     {human_bytes(_disk_bytes(path))} on disk")
    if m.get("defaults"):
        console.print(f"defaults: {m['defaults']}")
    comps = m.get("targets", {}).get("mlx", {}).get("components") or {}
    if comps:
        table = Table(show_edge=False)
        for col in ("component", "precision", "quantized layers", "parameters", "size"):
            table.add_column(col)
        for comp, entry in comps.items():
            quant = entry.get("quantization") or {}
            table.add_row(
                comp,
                precision(entry),
                f"{len(quant.get('layers') or quant.get('keys') or [])} "
                f"(kept {len(quant.get('kept', {}))})"
                if quant
                else "-",
                f"{entry.get('parameters', 0) / 1e6:.1f} M",
                human_bytes(entry.get("bytes", 0)),
            )
        console.print(table)
    quality = m.get("quality")
    if quality:
        value = quality.get("psnr_db")
        shown = "identical to the source" if value is None else f"{value:.1f} dB PSNR"
        verdict = "" if quality.get("passed", True) else " [yellow](below threshold)[/yellow]"
        console.print(
            f"quality:  {shown} at {quality.get('steps')} steps, seed {quality.get('seed')}"
            f"{verdict}"
        )


@models.command(
    "verify",
    epilog=examples("edgegen models verify sd15-q8", "edgegen models verify en_us-joe-medium"),
)
@click.argument("name")
def verify(name: str) -> None:
    """Check every file of NAME against the hashes in its manifest."""
    from edgegen import store
    from edgegen.errors import ModelError

    path = store.find(name)
    expected = _expected_files(store.read_manifest(path))
    if not expected:
        raise ModelError(f"model {name!r} records no file hashes; nothing to verify")
    bad = []
    for rel, digest in sorted(expected.items()):
        file = path / rel
        if not file.is_file():
            bad.append(f"{rel} is missing")
        elif store.sha256_file(file) != digest:
            bad.append(f"{rel} has changed")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelError(f"model {name!r} is damaged: {bad[0]}{more}; convert it again")
    click.echo(f"{name}: {len(expected)} files verified")


@models.command(
    "rm", epilog=examples("edgegen models rm sd15-q8", "edgegen models rm en_us-joe-medium")
)
@click.argument("name")
def rm(name: str) -> None:
    """Delete NAME from the store."""
    from edgegen import store

    path = store.find(name)
    size = _disk_bytes(path)
    store.remove(name)
    click.echo(f"removed {name} ({human_bytes(size)})")
