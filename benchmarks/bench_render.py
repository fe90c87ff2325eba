"""Render benchmark: edgegen's one-pass render vs the encode floor vs MoviePy 2.x.

A 60 s, 8-scene, 1080x1920@30 video from cached images and audio (the image model and the
voice are out of the picture: the images are in the cache, the speech is precomputed):

  render   edgegen.video.render.render, timed from script to finished MP4 (+ .srt/.vtt)
  floor    the same frames, already held in memory as yuv420p, encoded with the same
           encoder settings and the same soundtrack: the cost of encoding alone
  moviepy  MoviePy 2.x doing the same Ken Burns zooms/pans, crossfades, word-highlighted
           captions and ducked music, written with libx264 at the same CRF/preset

Run:  .venv/bin/python benchmarks/bench_render.py [--seconds 60] [--skip-moviepy]
MoviePy is a benchmark-only dependency (pip install moviepy; it pins pillow<12, so install it
with --no-deps into a venv that must keep a newer Pillow).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import edgegen  # noqa: F401  (loads the optimized BLAS first, as everywhere)
from edgegen.timings import Speech, Word
from edgegen.video import audio as soundtrack
from edgegen.video.encode import PRESETS, Encoder, encode, new_frame
from edgegen.video.render import LEAD, TAIL, render

WORDS = (
    "the quiet sea turns gold as morning light climbs over the hills and boats drift home".split()
)


class DrawnImages:
    """Stands in for the model; only used to fill the cache before timing."""

    name = "bench-model"
    native_size = (576, 1024)

    def generate(self, prompt, negative, seed, width, height):
        rng = np.random.default_rng(seed)
        y = np.linspace(0, 1, height)[:, None, None]
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        img = Image.fromarray((top * (1 - y) + bottom * y).repeat(width, 1).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(40):  # texture, so the encoder has real work
            x0, y0 = rng.integers(0, width), rng.integers(0, height)
            r = int(rng.integers(8, 80))
            d.ellipse(
                [x0 - r, y0 - r, x0 + r, y0 + r],
                fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            )
        return img


class CachedSpeaker:
    """Precomputed speech: a voiced buzz per word with exact word times, `seconds` long."""

    sample_rate = 22050

    def __init__(self, seconds: float):
        self.seconds = seconds

    def speak(self, text, *, speed=1.0):
        sr = self.sample_rate
        words, chunks, t, i = [], [], 0.0, 0
        rng = np.random.default_rng(0)  # the same speech whatever the text
        while t < self.seconds - 0.5:
            w = WORDS[i % len(WORDS)]
            n = int((0.12 + 0.045 * len(w)) * sr)
            x = np.arange(n) / sr
            f0 = 110 + 40 * rng.random()
            buzz = sum(np.sin(2 * np.pi * f0 * k * x) / k for k in range(1, 8))
            chunks += [0.2 * buzz * np.hanning(n), np.zeros(int(0.1 * sr))]
            words.append(Word(w, t, t + n / sr))
            t += n / sr + 0.1
            i += 1
        return Speech(np.concatenate(chunks).astype(np.float32), sr, words)


def write_music(path: Path, seconds: float = 20.0) -> None:
    import av

    rate = 44100
    x = np.arange(int(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * x) for f in (220.0, 277.2, 329.6)) * 0.15
    pcm = (np.stack([chord, chord], 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        s.codec_context.layout = "stereo"
        f = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate = rate
        for p in [*s.encode(f), *s.encode(None)]:
            c.mux(p)


def make_script(folder: Path, scenes: int) -> Path:
    moves = [
        "zoom-in",
        "pan-right",
        "zoom-out",
        "pan-up",
        "zoom-in",
        "pan-left",
        "zoom-out",
        "pan-down",
    ]
    text = "".join(
        f"Scene {i} tells part {i} of the story.\n[visual: scene {i}] [camera: {moves[i % 8]}]\n\n"
        for i in range(scenes)
    )
    path = folder / "bench.md"
    path.write_text(text)
    return path


class Clock:
    """Wall and CPU seconds (this process and its waited-for children, e.g. MoviePy's ffmpeg).

    CPU seconds are the fairer figure on a shared machine: other tenants stretch wall time.
    """

    def __enter__(self) -> Clock:
        self.t0, self.c0 = time.perf_counter(), os.times()
        return self

    def __exit__(self, *exc: object) -> None:
        c1 = os.times()
        self.wall = time.perf_counter() - self.t0
        self.cpu = sum(
            getattr(c1, k) - getattr(self.c0, k)
            for k in ("user", "system", "children_user", "children_system")
        )

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s wall {self.cpu:7.2f} s cpu"


def bench_edgegen(folder: Path, script: Path, music: Path, speaker, fps: int):
    render(
        script,
        folder / "warm.mp4",
        images=DrawnImages(),
        speaker=speaker,
        music=music,
        fps=1,
        size=(144, 256),
    )  # fills the image cache with the same keys
    with Clock() as clock:
        report = render(
            script,
            folder / "edgegen.mp4",
            images=DrawnImages(),
            speaker=speaker,
            music=music,
            fps=fps,
        )
    assert report.cache_hits == len(report.scenes), "images were not all cached"
    return clock, report


def bench_floor(folder: Path, report, music: Path, speaker, fps: int) -> Clock:
    """Encode the render's own frames, decoded into memory beforehand, with the same settings."""
    import av

    frames_yuv = []
    with av.open(str(report.path)) as c:
        for f in c.decode(video=0):
            frames_yuv.append([np.array(p) for p in _planes(f)])
    # the same soundtrack the render muxed: rebuild it the way render does
    voice, spans, offset = [], [], 0
    for scene in report.scenes:
        sp = speaker.speak("")
        v = soundtrack.to_stereo_48k(sp.audio, sp.sample_rate)
        n = round((scene.end - scene.start) * soundtrack.RATE)
        part = np.zeros((n, 2), np.float32)
        lead = round(LEAD * soundtrack.RATE)
        part[lead : lead + len(v)] = v
        spans += [
            (offset / soundtrack.RATE + LEAD + w.start, offset / soundtrack.RATE + LEAD + w.end)
            for w in sp.words
        ]
        voice.append(part)
        offset += n
    mixed = soundtrack.mix(np.concatenate(voice), spans, soundtrack.load_music(music))
    w, h = report.size

    def frames():
        for planes in frames_yuv:
            frame, views = new_frame(w, h)
            for view, plane in zip(views, planes, strict=True):
                view[...] = plane
            yield frame

    with Clock() as clock:
        enc = Encoder(folder / "floor.mp4", w, h, fps, PRESETS["final"], mixed)
        encode(enc, frames())
        enc.close()
    return clock


def _planes(frame):
    out = []
    for p in frame.planes:
        rows = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
        out.append(rows[:, : p.width])
    return out


def bench_moviepy(folder: Path, report, music: Path, speaker, fps: int) -> Clock:
    """The same video the way MoviePy users build it (ImageClip + resized/cropped + TextClip)."""
    from moviepy import (
        AudioArrayClip,
        AudioFileClip,
        CompositeAudioClip,
        CompositeVideoClip,
        ImageClip,
        TextClip,
        afx,
        vfx,
    )

    from edgegen.video.captions import Captioner
    from edgegen.video.kenburns import cover

    w, h = report.size
    cf = 0.4
    font = Captioner(w, h).fonts.faces[0].path
    clock = Clock().__enter__()
    images = DrawnImages()
    clips, captions, voice, spans = [], [], [], []
    for k, scene in enumerate(report.scenes):
        dur = scene.end - scene.start
        img = np.asarray(
            cover(images.generate("", "", scene.seed, 576, 1024), int(w * 1.15), int(h * 1.15))
        )
        move = scene.camera
        zoom = (
            (lambda t, d=dur: 1 + 0.15 * t / d)
            if move != "zoom-out"
            else (lambda t, d=dur: 1.15 - 0.15 * t / d)
        )
        base = ImageClip(img, duration=dur + cf).with_effects(
            [vfx.Resize(lambda t, z=zoom: z(t) / 1.15)]
        )
        if move.startswith("pan"):
            dx = (w * 0.15) if move in ("pan-left", "pan-right") else 0
            dy = (h * 0.15) if move in ("pan-up", "pan-down") else 0
            pos = lambda t, d=dur, dx=dx, dy=dy: (-dx * t / d, -dy * t / d)  # noqa: E731
            base = ImageClip(img, duration=dur + cf).with_position(pos)
        clip = CompositeVideoClip([base], size=(w, h)).with_start(max(0.0, scene.start - cf / 2))
        if k:
            clip = clip.with_effects([vfx.CrossFadeIn(cf)])
        clips.append(clip)
        sp = speaker.speak("")
        voice.append(sp)
        for i in range(0, len(sp.words), 4):  # 4-word pages, the active word highlighted
            page = sp.words[i : i + 4]
            for j, word in enumerate(page):
                end = page[j + 1].start if j + 1 < len(page) else word.end
                text = " ".join(x.word for x in page)
                tc = TextClip(
                    font=font,
                    text=text,
                    font_size=int(h * 0.046),
                    color="white",
                    stroke_color="black",
                    stroke_width=8,
                    method="caption",
                    size=(int(w * 0.8), None),
                )
                hl = TextClip(
                    font=font,
                    text=word.word,
                    font_size=int(h * 0.046),
                    color="#FFD21F",
                    stroke_color="black",
                    stroke_width=8,
                )
                t_start = scene.start + LEAD + word.start
                captions += [
                    tc.with_start(t_start)
                    .with_duration(end - word.start)
                    .with_position(("center", int(h * 0.62))),
                    hl.with_start(t_start)
                    .with_duration(end - word.start)
                    .with_position(("center", int(h * 0.55))),
                ]
            spans.append((scene.start + LEAD + page[0].start, scene.start + LEAD + page[-1].end))
    track = np.concatenate(
        [
            np.pad(
                soundtrack.to_stereo_48k(sp.audio, sp.sample_rate),
                ((round(LEAD * 48000), round(TAIL * 48000)), (0, 0)),
            )
            for sp in voice
        ]
    )
    total = sum(s.end - s.start for s in report.scenes)
    voice_clip = AudioArrayClip(track[: int(total * 48000)], fps=48000)
    duck = [afx.MultiplyVolume(0.25, start_time=a, end_time=b) for a, b in spans]
    music_clip = AudioFileClip(str(music)).with_effects(
        [afx.AudioLoop(duration=total), *duck, afx.AudioFadeOut(1.5)]
    )
    video = CompositeVideoClip(clips + captions, size=(w, h)).with_duration(total)
    video = video.with_audio(CompositeAudioClip([voice_clip, music_clip]).with_duration(total))
    s = PRESETS["final"]
    video.write_videofile(
        str(folder / "moviepy.mp4"),
        fps=fps,
        codec="libx264",
        audio_codec="aac",
        audio_fps=48000,
        preset=s.preset,
        threads=os.cpu_count(),
        logger=None,
        ffmpeg_params=["-crf", str(s.crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    )
    clock.__exit__()
    return clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--skip-moviepy", action="store_true")
    ap.add_argument("--no-opencv", action="store_true", help="measure the Pillow/NumPy fallback")
    args = ap.parse_args()
    if args.no_opencv:
        from edgegen.video import kenburns

        kenburns.cv2, kenburns.BACKENDS = None, ("pillow",)
    per_scene = args.seconds / args.scenes
    speaker = CachedSpeaker(per_scene - LEAD - TAIL)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("EDGEGEN_HOME", str(folder / "home"))
        music = folder / "music.wav"
        write_music(music)
        script = make_script(folder, args.scenes)
        from edgegen.video import kenburns

        t_render, report = bench_edgegen(folder, script, music, speaker, args.fps)
        print(
            f"video: {report.duration:.2f} s, {report.frames} frames, {report.size[0]}x{report.size[1]}"
            f"@{args.fps}, {len(report.scenes)} scenes; cpu cores: {os.cpu_count()}; "
            f"resampler: {kenburns.BACKENDS[0]}; load average before: {os.getloadavg()[0]:.1f}"
        )
        print(
            f"edgegen render      {t_render}   stages: "
            + ", ".join(f"{k} {v:.2f}" for k, v in report.stage_seconds.items())
        )
        t_floor = bench_floor(folder, report, music, speaker, args.fps)
        print(f"floor (encode only) {t_floor}")
        print(
            f"render / floor      {t_render.wall / t_floor.wall:7.2f} x wall "
            f"{t_render.cpu / t_floor.cpu:7.2f} x cpu   (target <= 1.3)"
        )
        if not args.skip_moviepy:
            t_mp = bench_moviepy(folder, report, music, speaker, args.fps)
            print(f"moviepy 2.x         {t_mp}")
            print(
                f"moviepy / render    {t_mp.wall / t_render.wall:7.2f} x wall "
                f"{t_mp.cpu / t_render.cpu:7.2f} x cpu   (target >= 5)"
            )
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
