"""``edgegen run``: time to the first image and to the second in one session.

    .venv/bin/python benchmarks/bench_run.py [--steps 20]

Feeds two prompts to ``edgegen run`` on a pipe (the built-in model, its native 128×256) and
stamps each result line as it arrives, from the moment the process starts. The first image
pays start-up and the model's loading, the second only its own generation; the reference is
a separate ``edgegen generate`` run (start-up, loading and one image), which is what each
further image would cost without a session. Report the load average and OpenBLAS kernels.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGEGEN = str(ROOT / ".venv" / "bin" / "edgegen")
PROMPTS = ["a red sun over a calm sea at sunset", "a lighthouse on a cliff at night"]


def session(steps: int, out: Path) -> list[float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([EDGEGEN, "run", "--out", str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdin and proc.stdout
    proc.stdin.write(f"/steps {steps}\n/seed 1\n" + "".join(p + "\n" for p in PROMPTS))
    proc.stdin.close()
    stamps = [time.perf_counter() - t0 for _ in proc.stdout]
    if proc.wait() != 0 or len(stamps) != len(PROMPTS):
        sys.exit(f"edgegen run failed (rc {proc.returncode}, {len(stamps)} lines)")
    return stamps


def separate(steps: int, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([EDGEGEN, "generate", PROMPTS[1], "--steps", str(steps), "--seed", "1",
                    "-o", str(out / "one.png")], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        session(args.steps, Path(tmp) / "warm-up")  # fills the OS file cache
        first, second = session(args.steps, Path(tmp) / "run")
        alone = separate(args.steps, Path(tmp))
    print(f"first image  {first:6.2f} s after start (start-up + loading + image)")
    print(f"second image {second - first:6.2f} s after the first")
    print(f"separate `edgegen generate` run {alone:6.2f} s; "
          f"ratio separate / second-in-session = {alone / (second - first):.2f}x")


if __name__ == "__main__":
    main()
