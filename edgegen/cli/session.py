"""The ``edgegen run`` session: settings, commands, warm models and history, independent of
how the terminal shows them.

    session = Session(Path("edgegen-run"), ui)
    session.handle("/steps 3")
    session.handle("a lighthouse at dusk")      # → edgegen-run/0001-<seed>.png

A line is a prompt, or a command starting with ``/`` (COMMANDS). Every problem with a line
reaches the UI as one message and the session goes on; Ctrl-C during work cancels that work
(``interrupt_cancels``). The UI (edgegen/cli/run.py) shows messages, progress, images and the
settings panel; this module only decides what happens.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgegen.errors import EdgegenError, InputFileError, Terminated, UsageError
from edgegen.warm import Models

MAX_STEPS = 1000
MAX_GUIDANCE = 50.0
MAX_VARIATIONS = 16


class UI(Protocol):
    """What a session needs from a terminal (or from a pipe)."""

    def message(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def warning(self, text: str) -> None: ...
    def settings(self, rows: list[tuple[str, str]]) -> None: ...
    def status(self, text: str) -> AbstractContextManager[None]: ...
    def progress(self) -> AbstractContextManager[Callable[[str, int, int], None]]: ...
    def result(self, result: Result, images: list[Any]) -> None: ...
    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None: ...


@dataclass
class Settings:
    model: str | None = None  # None: the built-in model
    size: tuple[int, int] | None = None  # None: the model's default
    steps: int | None = None  # None: the model's default
    guidance: float | None = None
    sampler: str | None = None
    seed: int | None = None  # None: a new random seed for every image
    style: str | None = None  # a render style preset (edgegen.video.prompts.STYLES)
    negative: str = ""


@dataclass
class Result:
    number: int
    kind: str  # "image", "variations", "speech", "video"
    text: str  # the prompt, the spoken text or the script
    paths: list[Path]
    seeds: list[int] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0  # of ``seconds``, spent loading models
    details: str = ""  # size, steps, sampler (images); duration and words (speech)


@dataclass
class Command:
    run: Callable[[Session, str], None]
    usage: str
    help: str


class Quit(Exception):
    """/quit: leave the session."""


class Session:
    def __init__(
        self,
        out_dir: Path,
        ui: UI,
        settings: Settings | None = None,
        models: Models | None = None,
        interrupt_cancels: bool = True,
        debug: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.ui = ui
        self.s = settings or Settings()
        self.models = models or Models(one_each=True)
        self.interrupt_cancels = interrupt_cancels
        self.debug = debug
        self.history: list[Result] = []
        self.last_prompt: str | None = None
        self.last_seed: int | None = None
        self.first_error: EdgegenError | None = None
        self._load_seconds = 0.0  # loading within the current command (for its result line)
        self.started = time.perf_counter()
        self._number = _next_number(self.out_dir)

    # --- The loop's one entry point ---------------------------------------------------

    def handle(self, line: str) -> bool:
        """Run one line; False once the session should end (/quit)."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    self._dispatch(line)
                finally:
                    for message in dict.fromkeys(str(w.message) for w in caught):
                        self.ui.warning(message)
        except Quit:
            return False
        except EdgegenError as e:
            self._failed(e)
        except KeyboardInterrupt as e:
            if not self.interrupt_cancels or isinstance(e, Terminated):
                raise  # SIGTERM ends the session; Ctrl-C in a terminal cancels the work
            self.ui.message("cancelled")
        except Exception as e:  # a bug: say so in one line, keep the session
            if self.debug:
                raise
            self._failed(
                EdgegenError(f"internal error ({type(e).__name__}: {e}); rerun with --debug")
            )
        return True

    def _failed(self, e: EdgegenError) -> None:
        self.first_error = self.first_error or e
        self.ui.error(e.describe())

    def _dispatch(self, line: str) -> None:
        if not line.startswith("/"):
            self.generate(line)
            return
        name, _, arg = line[1:].partition(" ")
        command = COMMANDS.get(ALIASES.get(name.lower(), name.lower()))
        if command is None:
            raise UsageError(f"unknown command {'/' + name!r}; type /help for the commands")
        command.run(self, arg.strip())

    # --- Models ---------------------------------------------------------------------------

    def pipeline(self) -> Any:
        """The current model, loading it (all components) if it is not loaded yet."""
        if self.models.loaded("pipeline", self.s.model):
            return self.models.pipeline(self.s.model)
        label = self.s.model or "the built-in model"
        t0 = time.perf_counter()
        with self.ui.status(f"loading {label}…"):
            sd = self.models.pipeline(self.s.model, warm=True)
        self._load_seconds += time.perf_counter() - t0
        self.ui.message(f"loaded {sd.name} in {time.perf_counter() - t0:.1f} s")
        return sd

    def voice(self) -> Any:
        if self.models.loaded("voice", None):
            return self.models.voice(None)
        t0 = time.perf_counter()
        with self.ui.status("loading the voice…"):
            voice = self.models.voice(None)
        self._load_seconds += time.perf_counter() - t0
        return voice

    def settings_rows(self) -> list[tuple[str, str]]:
        """The settings panel: each value as it will be used (the model's defaults filled in
        once the model is loaded)."""
        s = self.s
        sd = self.models.pipeline(s.model) if self.models.loaded("pipeline", s.model) else None
        if sd is not None:
            steps, guidance = sd.settings(s.steps, s.guidance)
            w, h = s.size or sd.default_size
            model, size, sampler = sd.name, f"{w}x{h}", sd.sampler_name(s.sampler)
        else:
            model = s.model or "built-in"
            steps, guidance = s.steps, s.guidance
            size = f"{s.size[0]}x{s.size[1]}" if s.size else "model's"
            sampler = s.sampler or "model's"
        return [
            ("model", model),
            ("size", size),
            ("steps", str(steps) if steps is not None else "model's"),
            ("guidance", f"{guidance:g}" if guidance is not None else "model's"),
            ("sampler", sampler),
            ("seed", "random" if s.seed is None else str(s.seed)),
            ("style", s.style or "none"),
            ("negative", s.negative or "—"),
        ]

    def show_settings(self) -> None:
        self.ui.settings(self.settings_rows())

    # --- Work -------------------------------------------------------------------------------

    def _take_number(self) -> int:
        n = self._number
        self._number += 1
        return n

    def _styled(self, prompt: str) -> tuple[str, str]:
        if self.s.style is None:
            return prompt, self.s.negative
        from edgegen.video.prompts import build_prompt, negative_prompt

        negative = negative_prompt(self.s.style)
        return build_prompt(prompt, self.s.style), ", ".join(
            t for t in (self.s.negative, negative) if t
        )

    def generate(self, prompt: str, seeds: list[int] | None = None) -> None:
        """Make one image of ``prompt`` (or one per seed of ``seeds``: /variations)."""
        import secrets

        from edgegen.generate import GROUP_SIZE, group_key, plan_generate, resolve

        if seeds is None:
            seeds = [secrets.randbelow(2**31) if self.s.seed is None else self.s.seed]
        full, negative = self._styled(prompt)
        number = self._number
        tag = f"{number:04d}"
        plans = [
            plan_generate(
                full,
                negative=negative,
                seed=seed,
                steps=self.s.steps,
                guidance=self.s.guidance,
                scheduler=self.s.sampler,
                size=self.s.size,
                output=self.out_dir / f"{tag}-{seed}.png",
            )
            for seed in seeds
        ]  # every value checked before the number is taken or anything loads
        self._load_seconds = 0.0
        t0 = time.perf_counter()
        sd = self.pipeline()
        self._take_number()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.last_prompt = prompt
        kind = "image" if len(seeds) == 1 else "variations"
        result = Result(number, kind, prompt, [], [], load_seconds=self._load_seconds)
        try:
            with self.ui.progress() as update:
                grouped = len(plans) > 1 and group_key(plans[0], sd) is not None
                for start in range(0, len(plans), GROUP_SIZE if grouped else 1):
                    chunk = plans[start : start + (GROUP_SIZE if grouped else 1)]
                    label = (
                        f"seed {chunk[0].seeds[0]}"
                        if len(chunk) == 1
                        else f"seeds {chunk[0].seeds[0]}–{chunk[-1].seeds[0]}"
                    )
                    self._run_chunk(chunk, sd, lambda d, t, label=label: update(label, d, t))
                    for plan in chunk:
                        result.paths.append(plan.paths[0])
                        result.seeds.append(plan.seeds[0])
        finally:
            if not result.paths:
                self._number = number  # nothing written (cancelled): the number is free again
            else:
                self.last_seed = result.seeds[-1]
                p, sampler = resolve(plans[0], sd)
                result.details = f"{p.width}x{p.height} · {p.steps} steps · {sampler}"
                result.seconds = time.perf_counter() - t0
                self.history.append(result)
                self.ui.result(result, [_open_image(path) for path in result.paths])
        self.show_settings()

    @staticmethod
    def _run_chunk(chunk: list, sd: Any, on_step: Callable[[int, int], None]) -> None:
        from edgegen.generate import run_generate, run_generate_group

        if len(chunk) == 1:
            run_generate(chunk[0], sd, lambda _seed, d, t: on_step(d, t))
        else:
            run_generate_group(chunk, sd, on_step)

    def speak(self, text: str) -> None:
        from edgegen.speech import speak_to_file

        if not text:
            raise UsageError("/speak needs the text to say, e.g. /speak Hello there.")
        number = self._take_number()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        wav = self.out_dir / f"{number:04d}-speech.wav"
        srt = wav.with_suffix(".srt")
        self._load_seconds = 0.0
        t0 = time.perf_counter()
        voice = self.voice()
        with self.ui.status("speaking…"):
            seconds, words = speak_to_file(voice, text, wav, timings=srt, seed=0)
        details = f"{seconds:.1f} s of audio · {words} words · timings {srt.name}"
        result = Result(number, "speech", text, [wav, srt], [], time.perf_counter() - t0,
                        self._load_seconds, details)  # fmt: skip
        self.history.append(result)
        self.ui.result(result, [])

    def render(self, arg: str) -> None:
        from edgegen.pipelines import StableDiffusionImageSource
        from edgegen.video.render import render as render_video

        if not arg:
            raise UsageError("/render needs a script or storyboard, e.g. /render story.md")
        script = Path(arg).expanduser()
        if not script.is_file():
            raise InputFileError(f"{arg}: script: file not found")
        from edgegen.video import storyboard

        storyboard.load(script)  # a script that does not parse is found before any model loads
        number = self._take_number()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{number:04d}-{script.stem}.mp4"
        self._load_seconds = 0.0
        t0 = time.perf_counter()
        images = StableDiffusionImageSource(self.pipeline(), self.s.steps, self.s.guidance,
                                            self.s.sampler)  # fmt: skip
        speaker = self.voice()
        upscaler = self.models.upscaler(None)
        with self.ui.progress() as update:
            report = render_video(
                script,
                out,
                images=images,
                speaker=speaker,
                style=self.s.style,
                seed=self.s.seed,
                upscaler=upscaler,
                progress=lambda e: update(e.stage, e.done, e.total),
            )
        w, h = report.size
        details = f"{report.duration:.1f} s video · {w}x{h} · {len(report.scenes)} scenes"
        paths = [report.path, *report.subtitles]
        result = Result(number, "video", str(script), paths, [], time.perf_counter() - t0,
                        self._load_seconds, details)  # fmt: skip
        self.history.append(result)
        self.ui.result(result, [])

    # --- Settings commands -----------------------------------------------------------------

    def set_model(self, arg: str) -> None:
        if not arg:
            raise UsageError("/model needs a model: a store name, a folder, or 'default'")
        name = None if arg.lower() in ("default", "built-in") else arg
        previous = self.s.model
        self.s.model = name
        try:
            self._load_seconds = 0.0
            self.pipeline()  # loads the new model, then frees the old one
        except BaseException:
            self.s.model = previous
            raise
        self.show_settings()

    def set_seed(self, arg: str) -> None:
        if arg.lower() in ("random", "none", ""):
            self.s.seed = None
        else:
            seed = _integer(arg, "seed", "a whole number or 'random'")
            if not 0 <= seed < 2**63:
                raise UsageError(f"seed {seed} is out of range; use 0 to 2**63-1 or 'random'")
            self.s.seed = seed
        self.show_settings()

    def set_steps(self, arg: str) -> None:
        if arg.lower() == "default":
            self.s.steps = None
        else:
            steps = _integer(arg, "steps", f"a whole number from 1 to {MAX_STEPS}")
            if not 1 <= steps <= MAX_STEPS:
                raise UsageError(f"steps {steps} is out of range; use 1 to {MAX_STEPS}")
            self.s.steps = steps
        self.show_settings()

    def set_guidance(self, arg: str) -> None:
        if arg.lower() == "default":
            self.s.guidance = None
        else:
            try:
                guidance = float(arg)
            except ValueError:
                raise UsageError(
                    f"guidance {arg!r} is not a number; use 0 to {MAX_GUIDANCE:g} (≤ 1: no "
                    "guidance)"
                ) from None
            if not 0 <= guidance <= MAX_GUIDANCE:
                raise UsageError(
                    f"guidance {guidance:g} is out of range; use 0 to {MAX_GUIDANCE:g}"
                )
            self.s.guidance = guidance
        self.show_settings()

    def set_size(self, arg: str) -> None:
        from edgegen.params import SIZE_MULTIPLE

        if arg.lower() == "default":
            self.s.size = None
            self.show_settings()
            return
        m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", arg.lower())
        if not m:
            raise UsageError(f"size {arg!r} is not WIDTHxHEIGHT, e.g. /size 128x256")
        w, h = int(m.group(1)), int(m.group(2))
        for label, v in (("width", w), ("height", h)):
            if v < SIZE_MULTIPLE or v % SIZE_MULTIPLE or v > 4096:
                raise UsageError(
                    f"{label} {v} is not a multiple of {SIZE_MULTIPLE} from {SIZE_MULTIPLE} to 4096"
                )
        self.s.size = (w, h)
        self.show_settings()

    def set_sampler(self, arg: str) -> None:
        from edgegen.samplers import SAMPLERS

        if arg.lower() in ("default", ""):
            self.s.sampler = None
        elif arg not in SAMPLERS:
            raise UsageError(f"sampler {arg!r} is unknown; use one of {', '.join(SAMPLERS)}")
        else:
            self.s.sampler = arg
        self.show_settings()

    def set_style(self, arg: str) -> None:
        from edgegen.video.prompts import STYLES

        if arg.lower() in ("none", ""):
            self.s.style = None
        elif arg not in STYLES:
            raise UsageError(f"style {arg!r} is unknown; use one of {', '.join(STYLES)} or none")
        else:
            self.s.style = arg
        self.show_settings()

    def set_negative(self, arg: str) -> None:
        self.s.negative = arg
        self.show_settings()

    # --- Session commands --------------------------------------------------------------------

    def again(self, arg: str) -> None:
        if self.last_prompt is None:
            raise UsageError("/again repeats the last prompt, and there is none yet")
        self.generate(self.last_prompt)

    def variations(self, arg: str) -> None:
        if self.last_prompt is None:
            raise UsageError("/variations needs a prompt first; type one")
        n = _integer(arg or "4", "count", f"a whole number from 2 to {MAX_VARIATIONS}")
        if not 2 <= n <= MAX_VARIATIONS:
            raise UsageError(f"variations {n} is out of range; use 2 to {MAX_VARIATIONS}")
        base = (self.last_seed if self.last_seed is not None else 0) + 1
        self.generate(self.last_prompt, seeds=[(base + i) % 2**63 for i in range(n)])

    def show_history(self, arg: str) -> None:
        rows = [
            [str(r.number), r.kind, _short(r.text), ", ".join(map(str, r.seeds)) or "—",
             f"{r.seconds:.1f} s", ", ".join(p.name for p in r.paths[:2])
             + (f" +{len(r.paths) - 2}" if len(r.paths) > 2 else "")]
            for r in self.history
        ]  # fmt: skip
        if not rows:
            self.ui.message("no results yet")
            return
        self.ui.table("history", ["#", "kind", "text", "seed", "time", "files"], rows)

    def open(self, arg: str) -> None:
        if not self.history:
            raise UsageError("/open N shows result N again, and there are no results yet")
        n = _integer(arg, "result", "a number from /history")
        by_number = {r.number: r for r in self.history}
        if n not in by_number:
            raise UsageError(
                f"result {n} is not in this session; use one of "
                f"{', '.join(str(r.number) for r in self.history)}"
            )
        r = by_number[n]
        images = [_open_image(p) for p in r.paths if p.suffix == ".png" and p.is_file()]
        self.ui.result(r, images)

    def help(self, arg: str) -> None:
        rows = [[c.usage, c.help] for c in COMMANDS.values()]
        self.ui.table("commands (anything else is a prompt)", ["command", "does"], rows)

    def quit(self, arg: str) -> None:
        raise Quit

    def summary(self) -> str:
        images = sum(len(r.seeds) for r in self.history)
        other = sum(1 for r in self.history if r.kind in ("speech", "video"))
        return (
            f"{images} image(s), {other} speech/video result(s) in {self.out_dir}; "
            f"session {time.perf_counter() - self.started:.1f} s"
        )

    def close(self) -> None:
        self.models.close()


def _integer(arg: str, what: str, valid: str) -> int:
    try:
        return int(arg)
    except ValueError:
        raise UsageError(f"{what} {arg!r} is not valid; use {valid}") from None


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _open_image(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def _next_number(out_dir: Path) -> int:
    """One past the highest ``NNNN-`` file already in ``out_dir``: a new session never
    overwrites an old one's results."""
    numbers = [
        int(m.group(1))
        for p in (out_dir.iterdir() if out_dir.is_dir() else ())
        if (m := re.match(r"(\d{4,})-", p.name))
    ]
    return max(numbers, default=0) + 1


COMMANDS: dict[str, Command] = {
    "model": Command(Session.set_model, "/model NAME", "load another model (the old one is freed)"),
    "seed": Command(Session.set_seed, "/seed N|random", "fix the seed, or draw one per image"),
    "steps": Command(Session.set_steps, "/steps N", "sampling steps (default: the model's)"),
    "guidance": Command(Session.set_guidance, "/guidance F", "CFG scale; ≤ 1 turns guidance off"),
    "size": Command(Session.set_size, "/size WxH", "image size, multiples of 64"),
    "sampler": Command(Session.set_sampler, "/sampler NAME", "ddim, euler, euler_a, dpmpp_2m, …"),
    "style": Command(Session.set_style, "/style NAME|none", "a render style preset"),
    "negative": Command(Session.set_negative, "/negative TEXT", "negative prompt (empty: none)"),
    "again": Command(Session.again, "/again", "the last prompt again, with the settings now"),
    "variations": Command(Session.variations, "/variations N", "N more seeds of the last prompt"),
    "speak": Command(lambda s, a: s.speak(a), "/speak TEXT", "write TEXT as WAV + word timings"),
    "render": Command(lambda s, a: s.render(a), "/render FILE", "render a script to a video"),
    "history": Command(Session.show_history, "/history", "what this session has made"),
    "open": Command(Session.open, "/open N", "show result N again"),
    "help": Command(Session.help, "/help", "this list"),
    "quit": Command(Session.quit, "/quit", "leave (Ctrl-D too)"),
}
ALIASES = {"exit": "quit", "q": "quit", "h": "help", "?": "help", "neg": "negative"}
