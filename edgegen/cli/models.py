"""``edgegen models list|info|verify|rm``: look after the local model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgegen.cli.convert import human_bytes, precision
from edgegen.cli.options import examples
from edgegen.fileio import sha256_file

if TYPE_CHECKING:  # the manifest imports MLX, which `edgegen --help` must not load
    from edgegen.converters.manifest import Manifest


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _precision(manifest: Manifest) -> str:
    """One word for a whole model: the UNet's (or first component's) precision."""
    comps = manifest.mlx.components
    if not comps:
        return "-"
    return precision(comps.get("unet") or next(iter(comps.values())))


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
            m.name,
            m.kind,
            m.family,
            _precision(m),
            human_bytes(_disk_bytes(path)),
            m.created.replace("T", " ").removesuffix("+00:00"),
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
    from edgegen.converters.manifest import Manifest

    path = store.find(name)
    m = Manifest.read(path)
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=1, ensure_ascii=False))
        return
    console = Console()
    source = m.source
    console.print(f"[bold]{m.name}[/bold]  {m.kind} / {m.family}")
    console.print(f"path:     {path}")
    console.print(
        f"format:   {m.format_version} (edgegen {m.edgegen_version}), created {m.created}"
    )
    console.print(f"source:   {source.get('path', '?')} ({source.get('kind', '?')})")
    console.print(f"size:     {human_bytes(_disk_bytes(path))} on disk")
    if m.defaults:
        console.print(f"defaults: {m.defaults}")
    for target_name, target in m.targets.items():
        table = Table(title=f"{target_name} target", show_edge=False)
        for col in ("component", "precision", "quantized layers", "parameters", "size"):
            table.add_column(col)
        for comp, entry in target.components.items():
            quant = entry.quantization
            table.add_row(
                comp,
                precision(entry),
                f"{len(quant.layers)} (kept {len(quant.kept)})" if quant else "-",
                f"{entry.parameters / 1e6:.1f} M",
                human_bytes(entry.bytes),
            )
        console.print(table)
    quality = m.quality
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
    from edgegen.converters.manifest import Manifest

    expected = Manifest.read(path).file_hashes()
    if not expected:
        raise ModelError(f"model {name!r} records no file hashes; nothing to verify")
    bad = []
    for rel, digest in sorted(expected.items()):
        file = path / rel
        if not file.is_file():
            bad.append(f"{rel} is missing")
        elif sha256_file(file) != digest:
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
