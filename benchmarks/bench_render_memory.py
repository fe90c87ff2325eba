"""Render's peak memory does not grow with the video's length: a ~30 s and a ~120 s script
rendered by ``edgegen render`` (built-in model and voice, upscaling on, as the main command),
peak resident memory of each run (getrusage of the child) and the ratio.

    .venv/bin/python benchmarks/bench_render_memory.py [--draft]

Frames are encoded as they are drawn and scene images are kept as files, so the peak should
be the models plus a few frames, whatever the length. Report with the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGEGEN = str(ROOT / ".venv" / "bin" / "edgegen")
SENTENCES = [
    "A small boat sails across a calm bay at dawn, and the gulls follow it out.",
    "On the hill above the harbour, a red house catches the first light of the sun.",
    "By noon the market is full, and the smell of bread drifts down the narrow street.",
    "In the evening a green lamp glows in the lighthouse window over the dark sea.",
]


def script(path: Path, scenes: int) -> Path:
    path.write_text("\n\n".join(SENTENCES[i % 4] for i in range(scenes)) + "\n")
    return path


def run(scenes: int, tmp: Path, draft: bool) -> tuple[float, float, float]:
    src = script(tmp / f"s{scenes}.md", scenes)
    out = tmp / f"s{scenes}.mp4"
    cmd = [EDGEGEN, "render", str(src), "-o", str(out), *(["--draft"] if draft else [])]
    env = dict(os.environ, EDGEGEN_HOME=str(tmp / "home"))  # a cold image cache for each
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status:
        raise SystemExit(proc.stderr.read() if proc.stderr else f"render failed ({status})")
    import av

    with av.open(str(out)) as c:
        duration = float(c.duration) / 1e6
    return usage.ru_maxrss / 1024, seconds, duration


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draft", action="store_true")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")  # fmt: skip
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        rows = [run(n, tmp, args.draft) for n in (6, 24)]
    for (peak, seconds, duration) in rows:
        print(f"{duration:6.1f} s video: peak RSS {peak:7.0f} MiB, rendered in {seconds:6.1f} s")
    print(f"peak ratio long/short = {rows[1][0] / rows[0][0]:.2f} "
          f"(video {rows[1][2] / rows[0][2]:.1f}x longer)")


if __name__ == "__main__":
    main()
