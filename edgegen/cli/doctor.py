"""``edgegen doctor``: what edgegen runs on — BLAS, device, versions, store."""

from __future__ import annotations

import platform
import time

import click

from edgegen.cli.options import examples


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 matmul throughput of the active MLX device."""
    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a @ b)
    t0 = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


@click.command(
    "doctor",
    epilog=examples("edgegen doctor", "edgegen doctor --no-bench    # skip the BLAS measurement"),
)
@click.option("--bench/--no-bench", default=True, show_default=True, help="Measure matmul speed.")
def doctor(bench: bool) -> None:
    """Show the active BLAS, MLX device, versions and model store."""
    import mlx.core as mx
    from rich.console import Console
    from rich.table import Table

    import edgegen
    from edgegen import store

    table = Table(show_header=False, box=None)
    table.add_row("edgegen", edgegen.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("platform", f"{platform.system()} {platform.machine()}")
    table.add_row("mlx", mx.__version__)
    table.add_row("device", str(mx.default_device()))
    blas = edgegen.BLAS
    core = f" [{blas.core}]" if blas.core else ""
    table.add_row("blas", f"{blas.name}{core} ({blas.path or blas.reason})")
    if bench:
        gflops = sgemm_gflops()
        verdict = "ok" if gflops > 30 else "slow: install libopenblas0-pthread (see README)"
        table.add_row("sgemm 1024²", f"{gflops:.0f} GFLOP/s — {verdict}")
    table.add_row("speech", _speech_lanes())
    table.add_row("store", str(store.models_dir()))
    table.add_row("models", str(len(store.list_models())))
    Console().print(table)


def _speech_lanes() -> str:
    """How many processes speak a long text side by side here (edgegen.speech.parallel)."""
    from edgegen.device import on_gpu
    from edgegen.errors import UsageError
    from edgegen.speech.parallel import LANES_VAR, cpu_lanes

    if on_gpu():
        return "one process (MLX on the GPU)"
    try:
        lanes = cpu_lanes()
    except UsageError as e:  # the doctor reports it rather than failing
        return f"invalid: {e}"
    if lanes < 2:
        return f"one process (set {LANES_VAR}=N to use N)"
    return f"{lanes} processes side by side ({LANES_VAR} to change)"
