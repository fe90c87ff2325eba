"""Batch throughput: ``edgegen batch`` vs separate ``edgegen generate`` runs, and Ray vs local.

    .venv/bin/python benchmarks/bench_batch.py [--jobs 20] [--skip-ray]

20 generate jobs on the default model (its native 128×256, 20 steps, seeds 0..19):
1. ``edgegen batch jobs.jsonl`` (one process, the model loaded once) against 20 separate
   ``edgegen generate`` invocations (each paying start-up and loading); ratio = separate/batch.
2. ``--engine ray --workers 2`` on a local Ray instance against ``--engine local``; on 2 cores
   this measures Ray's overhead, not a speed-up. Ratio = ray/local.
All runs are subprocesses with a fresh output folder; a warm-up run fills the OS file cache.
Report the machine's load (uptime) and OpenBLAS kernels with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGEGEN = str(ROOT / ".venv" / "bin" / "edgegen")
PROMPT = "a red sun in the top left over a calm sea at sunset"


def write_jobs(folder: Path, n: int) -> Path:
    path = folder / "jobs.jsonl"
    lines = [json.dumps({"kind": "generate", "prompt": PROMPT, "seed": i,
                         "output": f"out/img-{i:02d}.png"}) for i in range(n)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "EDGEGEN_HOME": str(work / "home"), "RAY_AUTH_MODE": "disabled"}
        subprocess.run([EDGEGEN, "generate", PROMPT, "-o", str(work / "warm.png"), "--seed", "0"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        batch_dir = work / "batch"
        batch_dir.mkdir()
        batch = timed([EDGEGEN, "batch", str(write_jobs(batch_dir, args.jobs))], env)
        separate_dir = work / "separate"
        separate_dir.mkdir()
        t = time.perf_counter()
        for i in range(args.jobs):
            subprocess.run([EDGEGEN, "generate", PROMPT, "--seed", str(i),
                            "-o", str(separate_dir / f"img-{i:02d}.png")],
                           env=env, check=True, capture_output=True)  # fmt: skip
        separate = time.perf_counter() - t
        print(f"{args.jobs} generate jobs, default model 128x256, 20 steps:")
        print(f"  edgegen batch (local)        {batch:6.1f} s  ({batch / args.jobs:.2f} s/job)")
        print(
            f"  {args.jobs} x edgegen generate       {separate:6.1f} s  ({separate / args.jobs:.2f} s/job)"
        )
        print(f"  batch is {separate / batch:.2f}x faster")
        same = all(
            (batch_dir / "out" / f"img-{i:02d}.png").read_bytes()
            == (separate_dir / f"img-{i:02d}.png").read_bytes()
            for i in range(args.jobs)
        )
        print(f"  outputs byte-identical: {same}")
        if not args.skip_ray:
            ray_dir = work / "ray"
            ray_dir.mkdir()
            ray = timed([EDGEGEN, "batch", str(write_jobs(ray_dir, args.jobs)), "--engine", "ray",
                         "--workers", "2"], env)  # fmt: skip
            print(f"  edgegen batch --engine ray --workers 2 (local Ray, incl. its start) "
                  f"{ray:6.1f} s: {ray / batch:.2f}x local's time")  # fmt: skip


if __name__ == "__main__":
    main()
