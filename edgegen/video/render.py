"""Script -> finished vertical video, in one encoder pass.

The audio is the master clock: each scene lasts its speech plus padding (or its duration
override, if longer), scene boundaries are sample counts at 48 kHz, and frame numbers are
computed from those sample counts, so captions and cuts cannot drift from the voice.

Stages (each reported through ``progress``): 1. read and validate the storyboard,
2. speech per scene, 3. images per scene (cache, retry, fallback card), then upscaling of the
small ones (with an upscaler; cached too), 4. soundtrack,
5. frames streamed into the encoder, 6. subtitles beside the video.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgegen.errors import InputFileError, UsageError
from edgegen.fileio import atomic_path, check_writable
from edgegen.params import PromptTruncatedWarning
from edgegen.timings import Speech, Word, to_srt, to_vtt
from edgegen.video import audio as soundtrack
from edgegen.video import prompts, storyboard
from edgegen.video.cache import ImageCache, default_root, scene_key, upscale_key
from edgegen.video.captions import Captioner, Page
from edgegen.video.encode import PRESETS, Encoder, EncodeSettings, encode, new_frame
from edgegen.video.kenburns import KenBurns, Motion, Planes, auto_move, blend

LEAD = 0.25  # s of silence before each scene's speech
TAIL = 0.55  # s after it: room to breathe and for the crossfade


@runtime_checkable
class ImageSource(Protocol):
    """Draws scene images. An optional ``name`` attribute (the model id) keys the cache."""

    native_size: tuple[int, int]  # (width, height) the model draws at, 9:16

    def generate(
        self, prompt: str, negative: str, seed: int, width: int, height: int
    ) -> Image.Image: ...


@runtime_checkable
class Upscaler(Protocol):
    """Upscales scene images; ``edgegen.upscale.Upscaler`` satisfies this. ``name`` (and an
    optional ``fingerprint`` of its weights) keys the cache."""

    name: str
    scales: tuple[int, ...]

    def upscale(self, image: np.ndarray, scale: int | None = None) -> np.ndarray: ...


# A scene image more than this many times smaller than the frame (on either axis) is upscaled.
UPSCALE_ABOVE = 2.0


def upscale_factor(
    image_size: tuple[int, int], frame: tuple[int, int], scales: tuple[int, ...]
) -> int | None:
    """The upscaling factor for a scene image of ``image_size`` (w, h) shown in ``frame``:
    None when it is at most ``UPSCALE_ABOVE``× smaller; else the smallest offered factor that
    covers the frame, or the largest offered."""
    need = max(frame[0] / image_size[0], frame[1] / image_size[1])
    if need <= UPSCALE_ABOVE or not scales:
        return None
    return next((s for s in sorted(scales) if s >= need), max(scales))


@runtime_checkable
class Speaker(Protocol):
    """Speaks one scene; ``edgegen.speech.Voice`` satisfies this."""

    sample_rate: int

    def speak(self, text: str, *, speed: float = 1.0) -> Speech: ...


@dataclass(frozen=True)
class Event:
    stage: str  # "speech" | "images" | "upscale" | "audio" | "frames" | "subtitles"
    done: int
    total: int
    detail: str = ""


Progress = Callable[[Event], None]


@dataclass
class SceneReport:
    index: int
    line: int
    prompt: str
    seed: int
    camera: str
    start: float  # s in the video
    end: float
    image: str  # "cached" | "generated" | "fallback"
    error: str | None = None
    upscaled: int | None = None  # the factor its image was upscaled by, if it was


@dataclass
class RenderReport:
    path: Path
    subtitles: list[Path]
    duration: float  # s, of the soundtrack (the video matches it within a frame)
    frames: int
    fps: int
    size: tuple[int, int]
    bytes: int
    codec: str
    scenes: list[SceneReport]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    missing_glyphs: str = ""

    @property
    def failed(self) -> list[int]:
        return [s.index for s in self.scenes if s.image == "fallback"]

    @property
    def cache_hits(self) -> int:
        return sum(s.image == "cached" for s in self.scenes)

    @property
    def generated(self) -> int:
        return sum(s.image == "generated" for s in self.scenes)


def fallback_card(width: int, height: int, index: int, reason: str) -> Image.Image:
    """A clearly marked stand-in for a scene whose image could not be made."""
    img = Image.new("RGB", (width, height), (38, 38, 44))
    d = ImageDraw.Draw(img)
    step = max(8, width // 8)
    for x in range(-height, width, step):  # warning stripes
        d.line([(x, 0), (x + height, height)], fill=(70, 60, 20), width=step // 3)
    font = ImageFont.load_default(size=max(10, width // 14))
    small = ImageFont.load_default(size=max(8, width // 28))
    d.text(
        (width / 2, height * 0.42), "IMAGE UNAVAILABLE", font=font, fill=(255, 200, 40), anchor="mm"
    )
    d.text(
        (width / 2, height * 0.50),
        f"scene {index + 1}",
        font=font,
        fill=(240, 240, 240),
        anchor="mm",
    )
    d.text((width / 2, height * 0.57), reason[:60], font=small, fill=(200, 200, 200), anchor="mm")
    return img


def _speak(
    speaker: Speaker, scene: storyboard.Scene, board: storyboard.Storyboard, i: int
) -> Speech:
    speech = speaker.speak(scene.narration, speed=board.speed)
    if speech.sample_rate <= 0 or np.asarray(speech.audio).ndim != 1:
        raise InputFileError(
            f"{board.path}:{scene.line}: scenes[{i}]: the voice returned invalid audio "
            f"(rate {speech.sample_rate}, shape {np.shape(speech.audio)})"
        )
    return speech


def _image(
    images: ImageSource,
    cache: ImageCache,
    key: str,
    prompt: str,
    negative: str,
    seed: int,
    attempts: int,
) -> tuple[Image.Image | None, str, str | None]:
    cached = cache.get(key)
    if cached is not None:
        return cached, "cached", None
    w, h = images.native_size
    error = "unknown error"
    for _ in range(attempts):
        try:
            img = images.generate(prompt, negative, seed, w, h)
            if not isinstance(img, Image.Image) or img.width < 2 or img.height < 2:
                raise TypeError(f"image source returned {type(img).__name__}, not an image")
            cache.put(key, img)
            return img.convert("RGB"), "generated", None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
    return None, "fallback", error


def _upscaled(
    upscaler: Upscaler, cache: ImageCache, key: str, img: Image.Image, factor: int
) -> Image.Image:
    """``img`` upscaled by ``factor``, from the cache when this scene image was upscaled by
    this upscaler before."""
    ukey = upscale_key(key, f"{upscaler.name}:{getattr(upscaler, 'fingerprint', '')}", factor)
    cached = cache.get(ukey)
    if cached is not None:
        return cached
    big = Image.fromarray(upscaler.upscale(np.asarray(img.convert("RGB")), factor))
    cache.put(ukey, big)
    return big


def render(
    script: Path,
    out: Path | None = None,
    *,
    images: ImageSource,
    speaker: Speaker,
    style: str | None = None,
    music: Path | None = None,
    draft: bool = False,
    hardware: bool = False,
    seed: int | None = None,
    fps: int | None = None,
    size: tuple[int, int] | None = None,
    captions: bool | None = None,
    encode_settings: EncodeSettings | None = None,
    cache: ImageCache | None = None,
    attempts: int = 2,
    progress: Progress | None = None,
    upscaler: Upscaler | None = None,
) -> RenderReport:
    """Render ``script`` to ``out`` (default: beside the script, ``.mp4``) plus ``.srt``/``.vtt``.

    Arguments left ``None`` take the storyboard's values. ``hardware``: encode with
    VideoToolbox where it opens (macOS), else libx264. With an ``upscaler``, scene images more
    than ``UPSCALE_ABOVE``× smaller than the frame are upscaled before the camera moves over
    them (cached beside the scene image). Raises ``InputFileError`` /
    ``UsageError`` for bad input before anything is written; the MP4 appears only complete.
    """
    notify = progress or (lambda e: None)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. Storyboard, overrides, validation -- everything that can be wrong is checked here
    script = Path(script)
    out = Path(out) if out is not None else script.with_suffix(".mp4")
    if out.suffix.lower() != ".mp4":
        raise UsageError(f"output {str(out)!r} must end in .mp4")
    check_writable(out)
    if music is not None and not Path(music).is_file():
        raise InputFileError(f"{music}: music: file not found")
    board = storyboard.load(script)
    w, h = size or (board.width, board.height)
    board = board.with_overrides(style=style, music=music, seed=seed, fps=fps, captions=captions)
    board = board.with_overrides(width=w, height=h)
    if style is not None:
        prompts.style(style)  # a command-line style names no file line: UsageError
    storyboard.validate(board)
    settings = encode_settings or PRESETS["draft" if draft else "final"]
    if hardware:
        settings = replace(settings, hardware=True)
    # The music is decoded now, not after the voiceover and images: a file that does not
    # decode fails the render before any heavy stage.
    bed = soundtrack.load_music(board.music) if board.music else None
    cache = cache or ImageCache(default_root())
    model = getattr(images, "name", None) or type(images).__qualname__
    clock["read"] = time.perf_counter() - t0

    # 2. Speech: the clock. Scene k spans samples [bounds[k], bounds[k+1]) at 48 kHz.
    t0 = time.perf_counter()
    rate = soundtrack.RATE
    n_scenes = len(board.scenes)
    voice_parts: list[np.ndarray] = []
    words: list[list[Word]] = []
    bounds = [0]
    for i, scene in enumerate(board.scenes):
        speech = _speak(speaker, scene, board, i)
        v = soundtrack.to_stereo_48k(speech.audio, speech.sample_rate)
        lead = round(LEAD * rate)
        n = max(lead + len(v) + round(TAIL * rate), round((scene.duration or 0) * rate))
        part = np.zeros((n, 2), np.float32)
        part[lead : lead + len(v)] = v
        voice_parts.append(part)
        offset = (bounds[-1] + lead) / rate
        words.append([Word(x.word, offset + x.start, offset + x.end) for x in speech.words])
        bounds.append(bounds[-1] + n)
        notify(Event("speech", i + 1, n_scenes))
    clock["speech"] = time.perf_counter() - t0

    # 3. Images: cached by scene hash; failures retried, then a marked card
    t0 = time.perf_counter()
    gen_w, gen_h = images.native_size
    negative = prompts.negative_prompt(board.style)
    seen: dict[str, int] = {}
    reports: list[SceneReport] = []
    pictures: list[Image.Image] = []
    keys: list[str] = []
    for i, scene in enumerate(board.scenes):
        subject = prompts.subject(scene.narration, scene.visual)
        seen[subject] = seen.get(subject, -1) + 1
        scene_seed = (
            scene.seed
            if scene.seed is not None
            else prompts.scene_seed(board.seed, subject, seen[subject])
        )
        prompt = prompts.build_prompt(subject, board.style, board.character)
        key = scene_key(
            model=model,
            prompt=prompt,
            negative=negative,
            seed=scene_seed,
            width=gen_w,
            height=gen_h,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            img, how, error = _image(images, cache, key, prompt, negative, scene_seed, attempts)
        for record in caught:  # pass on what concerns the script's words, not the style terms
            m = record.message
            if isinstance(m, PromptTruncatedWarning) and (
                m.prompt == negative
                or prompts.only_style_dropped(m.prompt, m.dropped, subject, board.character)
            ):
                continue
            warnings.warn_explicit(m, record.category, record.filename, record.lineno)
        if img is None:
            img = fallback_card(gen_w, gen_h, i, error or "")
        pictures.append(img)
        reports.append(
            SceneReport(
                i,
                scene.line,
                prompt,
                scene_seed,
                scene.camera or auto_move(i),
                bounds[i] / rate,
                bounds[i + 1] / rate,
                how,
                error,
            )
        )
        notify(Event("images", i + 1, n_scenes, how))
        keys.append(key)
    clock["images"] = time.perf_counter() - t0

    # 3b. Upscaling: small model images become sharp frame-sized ones (cached as well)
    if upscaler is not None:
        t0 = time.perf_counter()
        for i, (img, rep) in enumerate(zip(pictures, reports, strict=True)):
            factor = upscale_factor(img.size, (w, h), tuple(upscaler.scales))
            if factor is not None and rep.image != "fallback":
                pictures[i] = _upscaled(upscaler, cache, keys[i], img, factor)
                rep.upscaled = factor
            notify(Event("upscale", i + 1, n_scenes))
        clock["upscale"] = time.perf_counter() - t0

    # 4. Soundtrack
    t0 = time.perf_counter()
    voice = np.concatenate(voice_parts)
    spans = [(x.start, x.end) for scene_words in words for x in scene_words]
    mixed = soundtrack.mix(voice, spans, bed)
    notify(Event("audio", 1, 1))
    clock["audio"] = time.perf_counter() - t0

    # 5. Frames -> encoder, one pass
    t0 = time.perf_counter()
    fps_ = board.fps
    total = round(len(mixed) * fps_ / rate)
    captioner = Captioner(w, h) if board.captions else None
    pages = (
        []
        if captioner is None
        else [
            p
            for k, ws in enumerate(words)
            for p in captioner.paginate(ws, until=bounds[k + 1] / rate)
        ]
    )
    frames = _frames(board, pictures, reports, bounds, total, captioner, pages)
    with atomic_path(out) as tmp:
        encoder = Encoder(tmp, w, h, fps_, settings, mixed, rate)
        try:
            encode(encoder, frames, on_frame=lambda k: notify(Event("frames", k, total)))
            encoder.close()
        except BaseException:
            encoder.abort()
            raise
    clock["encode"] = time.perf_counter() - t0

    # 6. Subtitles: page cues, exactly the words' times
    t0 = time.perf_counter()
    cues = (
        [p.cue for p in pages]
        if captioner
        else [Word(" ".join(x.word for x in ws), ws[0].start, ws[-1].end) for ws in words if ws]
    )
    subs = []
    for suffix, writer in ((".srt", to_srt), (".vtt", to_vtt)):
        path = out.with_suffix(suffix)
        with atomic_path(path) as tmp:
            tmp.write_text(writer(cues), encoding="utf-8")
        subs.append(path)
    notify(Event("subtitles", 1, 1))
    clock["subtitles"] = time.perf_counter() - t0

    return RenderReport(
        path=out,
        subtitles=subs,
        duration=len(mixed) / rate,
        frames=total,
        fps=fps_,
        size=(w, h),
        bytes=out.stat().st_size,
        codec=encoder.codec,
        scenes=reports,
        stage_seconds=clock,
        missing_glyphs="".join(sorted(captioner.fonts.missing)) if captioner else "",
    )


def _frames(
    board: storyboard.Storyboard,
    pictures: list[Image.Image],
    reports: list[SceneReport],
    bounds: list[int],
    total: int,
    captioner: Captioner | None,
    pages: list[Page],
) -> Iterator[av.VideoFrame]:
    """Every frame, in order, as a yuv420p VideoFrame (runs on the prefetch thread)."""
    rate, fps, w, h = soundtrack.RATE, board.fps, board.width, board.height
    times = [b / rate for b in bounds]
    n = len(pictures)
    # a crossfade never takes more than a third of the shortest scene
    cf = min(board.crossfade, min(b - a for a, b in zip(times, times[1:], strict=False)) / 3)
    motions: dict[int, KenBurns] = {}

    def scene_planes(k: int, t: float, out: list[np.ndarray] | None = None) -> Planes:
        if k not in motions:
            for old in [j for j in motions if j < k - 1]:
                del motions[old]  # keep memory flat: only the current and next scene
            motions[k] = KenBurns(pictures[k], w, h, Motion(reports[k].camera))
        # the motion spans the scene plus the crossfade halves on either side
        a = times[k] - (cf / 2 if k > 0 else 0.0)
        b = times[k + 1] + (cf / 2 if k + 1 < n else 0.0)
        return motions[k].frame((t - a) / (b - a), out)

    k, page_index = 0, 0
    for i in range(total):
        t = i / fps
        while k + 1 < n and t >= times[k + 1]:
            k += 1
        frame, views = new_frame(w, h)
        # frames are drawn straight into the encoder's buffers
        if cf > 0 and k + 1 < n and t >= times[k + 1] - cf / 2:
            weight = (t - (times[k + 1] - cf / 2)) / cf
            blend(scene_planes(k, t), scene_planes(k + 1, t), weight, views)
        elif cf > 0 and k > 0 and t < times[k] + cf / 2:
            weight = (t - (times[k] - cf / 2)) / cf
            blend(scene_planes(k - 1, t), scene_planes(k, t), weight, views)
        else:
            scene_planes(k, t, views)
        if captioner is not None:
            state = captioner.state_at(pages, t, page_index)
            if state is not None:
                page_index, page, active = state
                captioner.overlay(page, active).apply(views)
        yield frame
