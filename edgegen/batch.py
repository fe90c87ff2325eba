"""Offline, resumable batches of ``generate``, ``speak`` and ``render`` jobs.

    batch = Batch.open("jobs.jsonl")     # reads and checks every job; nothing runs yet
    for problem in batch.problems: print(problem)
    report = batch.run()                 # the valid jobs; models stay loaded across them

**Job file**: JSON Lines (one object per line; blank lines and ``#`` comments skipped) or TOML
(``[[jobs]]`` tables). Each job has ``kind`` (generate | speak | render), its argument
(``prompt``, ``text`` or ``script``), ``output``, and any of that command's long option names
(``--init-image`` → ``init_image`` or ``init-image``) with the command line's meaning.
Relative paths are relative to the job file.

**Checked up front**: every job is parsed and validated before any runs (types, ranges, input
files read, output extensions), and every problem is reported as ``FILE:LINE: FIELD: why``.

**Resumable**: a job's key is a hash of its fields, the bytes of its input files and the
identity of its models. The summary (``JOBS.summary.json`` beside the job file, rewritten
atomically after every job) records each finished key; on a re-run a job whose key is recorded
as done and whose outputs are all present is skipped. Outputs are written atomically, so a
``kill -9`` loses at most the job in progress; its hidden temporary files are swept on the next
run. A failing job is retried ``retry`` times, then recorded as failed, and the rest go on.

**Results**: the summary JSON (per job: status, key, outputs, seconds, error) and a contact
sheet (``JOBS.contact.png``) of every image the batch has produced.

Engines: ``local`` runs the jobs one after another in this process, each model loaded once
(:class:`Models`). ``ray`` (``edgegen.batch_ray``) runs them on Ray actors that hold their own
warm models.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgegen import __version__
from edgegen.errors import EdgegenError, InputFileError, UsageError
from edgegen.fileio import atomic_write_text, sha256_file
from edgegen.warm import Models

SUMMARY_VERSION = 1

# Field types: how a job's JSON/TOML value becomes the command's option value.
STR, INT, FLOAT, BOOL, SIZE, IN_FILE, OUT_FILE = "str", "int", "float", "bool", "size", "in", "out"


@dataclass(frozen=True)
class Kind:
    name: str
    argument: str  # the field that is the command's argument
    fields: dict[str, str]  # option name → type
    output_suffixes: tuple[str, ...]
    models: tuple[str, ...] = ()  # fields that name a model (their identity keys the job)


KINDS = {
    "generate": Kind(
        "generate", "prompt",
        {"prompt": STR, "output": OUT_FILE, "model": STR, "negative": STR, "seed": INT,
         "steps": INT, "guidance": FLOAT, "scheduler": STR, "size": SIZE, "count": INT,
         "clip_skip": INT, "init_image": IN_FILE, "strength": FLOAT, "mask": IN_FILE,
         "extend": STR, "extend_to": SIZE},
        (".png",), ("model",),
    ),
    "speak": Kind(
        "speak", "text",
        {"text": STR, "output": OUT_FILE, "voice": STR, "speed": FLOAT, "speaker": INT,
         "noise_scale": FLOAT, "noise_w": FLOAT, "seed": INT, "timings": OUT_FILE},
        (".wav",), ("voice",),
    ),
    "render": Kind(
        "render", "script",
        {"script": IN_FILE, "output": OUT_FILE, "model": STR, "voice": STR, "style": STR,
         "music": IN_FILE, "draft": BOOL, "fps": INT, "size": SIZE, "seed": INT,
         "captions": BOOL, "upscale": BOOL, "upscaler": STR},
        (".mp4",), ("model", "voice", "upscaler"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """Why one job cannot run: ``FILE:LINE: FIELD: why``."""

    file: Path
    line: int
    field: str
    why: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.why}" if self.field else f"{where}: {self.why}"


@dataclass
class Job:
    index: int  # 0-based, in file order
    line: int
    kind: str
    options: dict[str, Any]  # converted values, paths resolved
    key: str = ""  # hash of the inputs (set by validation)
    outputs: list[Path] = field(default_factory=list)
    plan: Any = None  # the kind's checked plan (generate)

    @property
    def label(self) -> str:
        arg = str(self.options.get(KINDS[self.kind].argument, ""))
        return f"#{self.index + 1} {self.kind} {arg[:40]!r}"


# --- Reading ---------------------------------------------------------------------------


def _entries(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """(line, raw job) pairs from a JSONL or TOML job file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"job file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read job file {str(path)!r}: {e}") from None
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputFileError(f"{path}: not valid TOML: {e}") from None
        jobs = data.get("jobs")
        if not isinstance(jobs, list) or not jobs:
            raise InputFileError(f"{path}: no [[jobs]] tables")
        # TOML tables carry no line numbers: find each [[jobs]] header's line.
        lines = [i for i, ln in enumerate(text.splitlines(), 1) if ln.strip() == "[[jobs]]"]
        lines += [0] * (len(jobs) - len(lines))
        return list(zip(lines, jobs, strict=True)), []
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise InputFileError(f"job file {str(path)!r} must be .jsonl or .toml")
    entries, problems = [], []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            entries.append((n, json.loads(raw)))
        except json.JSONDecodeError as e:
            problems.append(Problem(path, n, "", f"not a JSON object ({e.msg}, column {e.colno})"))
    return entries, problems


_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


def _convert(value: Any, kind: str, base: Path) -> Any:
    if kind == STR:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {json.dumps(value)}")
        return value
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {json.dumps(value)}")
        return value
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, not {json.dumps(value)}")
        return float(value)
    if kind == BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {json.dumps(value)}")
        return value
    if kind == SIZE:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            w, h = value
        elif isinstance(value, str) and (m := _SIZE.match(value)):
            w, h = int(m.group(1)), int(m.group(2))
        else:
            raise ValueError(f'must be WIDTHxHEIGHT like "576x1024", not {json.dumps(value)}')
        if w <= 0 or h <= 0:
            raise ValueError(f"{w}x{h} must have positive width and height")
        return (w, h)
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a file path, not {json.dumps(value)}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if kind == IN_FILE and not path.is_file():
        raise ValueError(f"file {str(path)!r} does not exist")
    return path


def _parse(path: Path, line: int, raw: Any, index: int) -> tuple[Job | None, list[Problem]]:
    problems: list[Problem] = []

    def bad(field_: str, why: str) -> None:
        problems.append(Problem(path, line, field_, why))

    if not isinstance(raw, dict):
        bad("", "a job must be an object with kind, its argument and output")
        return None, problems
    raw = {str(k).replace("-", "_").lstrip("_"): v for k, v in raw.items()}
    kind = raw.pop("kind", None)
    if not isinstance(kind, str) or kind not in KINDS:
        bad("kind", f"{json.dumps(kind)} is not a job kind; use one of {', '.join(KINDS)}")
        return None, problems
    spec = KINDS[kind]
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in spec.fields:
            bad(key, f"{kind} has no option {key!r}; valid: {', '.join(spec.fields)}")
            continue
        try:
            options[key] = _convert(value, spec.fields[key], path.parent)
        except ValueError as e:
            bad(key, str(e))
    for required in (spec.argument, "output"):
        if required not in options and not any(p.field == required for p in problems):
            bad(required, f"a {kind} job needs {required!r}")
    out = options.get("output")
    if isinstance(out, Path) and out.suffix.lower() not in spec.output_suffixes:
        bad("output", f"{str(out)!r} must end in {' or '.join(spec.output_suffixes)}")
    if problems:
        return None, problems
    return Job(index, line, kind, options), problems


# --- Validation of each kind (what the command checks before loading a model) ----------


def _check_generate(job: Job) -> None:
    from edgegen.generate import plan_generate

    o = {k: v for k, v in job.options.items() if k != "model"}
    o["count"] = o.get("count", 1)
    o["seed"] = o.get("seed", 0)  # a batch must be reproducible: no random seed
    job.plan = plan_generate(o.pop("prompt"), **o)
    job.outputs = list(job.plan.paths)


def _check_speak(job: Job) -> None:
    from edgegen.speech.audiofile import check_audio_path
    from edgegen.speech.voice import check_options
    from edgegen.timings import check_timings_path

    o = job.options
    if not o["text"].strip():
        raise UsageError("the text is empty")
    check_options(o.get("speed", 1.0), o.get("noise_scale"), o.get("noise_w"))
    check_audio_path(o["output"])
    timings = o.get("timings")
    if timings is not None:
        check_timings_path(timings)
    job.outputs = [o["output"], *([timings] if timings else [])]


def _check_render(job: Job) -> None:
    from edgegen.video import prompts, storyboard

    o = job.options
    board = storyboard.load(o["script"])
    w, h = o.get("size") or (board.width, board.height)
    if o.get("style") is not None:
        prompts.style(o["style"])
    over = {k: o.get(k) for k in ("style", "music", "seed", "fps", "captions")}
    storyboard.validate(board.with_overrides(**over, width=w, height=h))
    if o.get("upscaler") is not None and o.get("upscale") is False:
        raise UsageError("upscaler and upscale = false contradict each other")
    out = o["output"]
    job.outputs = [out, out.with_suffix(".srt"), out.with_suffix(".vtt")]


CHECKS: dict[str, Callable[[Job], None]] = {
    "generate": _check_generate,
    "speak": _check_speak,
    "render": _check_render,
}


def model_identity(kind: str, field_: str, name: str | None) -> str:
    """What identifies a model for the job key: a store artifact's manifest hash, a folder's
    or file's path and modification time, or the built-in default with edgegen's version."""
    from edgegen import store

    if name is None:
        return f"default:{field_}:{__version__}"
    path = Path(name).expanduser()
    if path.exists():
        marker = path / store.MANIFEST if (path / store.MANIFEST).is_file() else path
        return f"path:{path.resolve()}:{marker.stat().st_mtime_ns}"
    try:
        return f"store:{name}:{sha256_file(store.find(store.check_name(name)) / store.MANIFEST)}"
    except EdgegenError:
        return f"name:{name}"  # not found: the job will fail when it runs, and say why


def job_key(job: Job) -> str:
    spec = KINDS[job.kind]
    record: dict[str, Any] = {"kind": job.kind, "edgegen": __version__}
    for k, v in sorted(job.options.items()):
        if spec.fields[k] == IN_FILE:
            record[k] = {"sha256": sha256_file(v)}
        elif isinstance(v, Path):
            record[k] = str(v)
        else:
            record[k] = v
    if job.kind == "render":  # the script names its own music and voice
        from edgegen.video import storyboard

        board = storyboard.load(job.options["script"])
        if board.music:
            record["board_music"] = sha256_file(board.music)
        record.setdefault("voice", board.voice)
    for m in spec.models:
        record[f"{m}_identity"] = model_identity(job.kind, m, record.get(m))
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def read_jobs(path: Path) -> tuple[list[Job], list[Problem]]:
    """Every job of a job file, parsed and checked; the invalid ones as problems."""
    path = Path(path)
    entries, problems = _entries(path)
    jobs: list[Job] = []
    for index, (line, raw) in enumerate(entries):
        job, found = _parse(path, line, raw, index)
        problems += found
        if job is None:
            continue
        try:
            CHECKS[job.kind](job)
            job.key = job_key(job)
        except EdgegenError as e:
            problems.append(Problem(path, line, "", e.describe(lambda o: o.replace("-", "_"))))
            continue
        jobs.append(job)
    seen: dict[Path, Job] = {}
    for job in jobs:
        for out in job.outputs:
            if out in seen:
                problems.append(Problem(path, job.line, "output",
                                        f"{str(out)!r} is also written by the job on line {seen[out].line}"))  # fmt: skip
            seen[out] = job
    bad_lines = {p.line for p in problems}
    return [j for j in jobs if j.line not in bad_lines], sorted(problems, key=lambda p: p.line)


# --- Running ---------------------------------------------------------------------------


def run_job(
    job: Job, models: Models, on_progress: Callable[[int, int], None] | None = None
) -> list[Path]:
    """Run one checked job with warm ``models``; returns the files it wrote."""
    o = job.options
    if job.kind == "generate":
        from edgegen.generate import run_generate

        def on_step(_seed: int, done: int, total: int) -> None:
            if on_progress:
                on_progress(done, total)

        return run_generate(job.plan, models.pipeline(o.get("model")), on_step)
    if job.kind == "speak":
        from edgegen.speech import speak_to_file

        options = {
            k: o[k] for k in ("speed", "noise_scale", "noise_w", "speaker", "seed") if k in o
        }
        options.setdefault("seed", 0)
        speak_to_file(
            models.voice(o.get("voice")), o["text"], o["output"], o.get("timings"), **options
        )
        return job.outputs
    from edgegen.pipelines import StableDiffusionImageSource
    from edgegen.video import storyboard
    from edgegen.video.render import render

    board = storyboard.load(o["script"])
    upscaler = None if o.get("upscale") is False else models.upscaler(o.get("upscaler"))

    def on_event(e) -> None:
        if on_progress and e.stage == "frames":
            on_progress(e.done, e.total)

    render(
        o["script"], o["output"],
        images=StableDiffusionImageSource(models.pipeline(o.get("model"))),
        speaker=models.voice(o.get("voice") or board.voice),
        style=o.get("style"), music=o.get("music"), draft=o.get("draft", False),
        seed=o.get("seed"), fps=o.get("fps"), size=o.get("size"), captions=o.get("captions"),
        upscaler=upscaler, progress=on_event,
    )  # fmt: skip
    return job.outputs


def sweep_partial(outputs: list[Path]) -> int:
    """Remove the hidden temporary files an interrupted atomic write left beside ``outputs``
    (``.STEM.XXXXXXXX.SUFFIX``, fileio.atomic_path's names); returns how many."""
    removed = 0
    for out in outputs:
        if not out.parent.is_dir():
            continue
        pattern = re.compile(
            rf"^\.{re.escape(out.stem)}\.[A-Za-z0-9_]{{8}}{re.escape(out.suffix)}$"
        )
        for p in out.parent.iterdir():
            if pattern.match(p.name):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


@dataclass
class JobResult:
    index: int
    line: int
    kind: str
    key: str
    status: str  # "done" | "skipped" | "failed"
    outputs: list[str]
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None


@dataclass
class BatchReport:
    results: list[JobResult]
    problems: list[Problem]
    seconds: float
    summary: Path
    contact_sheet: Path | None
    loads: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def line(self) -> str:
        return (
            f"{self.count('done')} ran, {self.count('skipped')} skipped (already done), "
            f"{self.count('failed')} failed, {len({p.line for p in self.problems})} invalid; "
            f"{self.seconds:.1f}s"
        )


# (event, job, details): "start", "progress" (done, total), "done", "failed", "skipped".
Progress = Callable[[str, Job, dict[str, Any]], None]


class Batch:
    """A job file, read and checked (:attr:`jobs`, :attr:`problems`), ready to run."""

    def __init__(self, path: Path, jobs: list[Job], problems: list[Problem]):
        self.path, self.jobs, self.problems = Path(path), jobs, problems

    @classmethod
    def open(cls, path: Path | str) -> Batch:
        path = Path(path).expanduser()
        jobs, problems = read_jobs(path)
        return cls(path, jobs, problems)

    @property
    def summary_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.summary.json")

    @property
    def contact_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.contact.png")

    def previous(self) -> dict[str, dict[str, Any]]:
        """What an earlier run recorded: finished job keys → their result."""
        try:
            data = json.loads(self.summary_path.read_text(encoding="utf-8"))
            return {
                r["key"]: r for r in data.get("jobs", []) if r.get("status") in ("done", "skipped")
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def is_done(self, job: Job, previous: dict[str, dict[str, Any]]) -> bool:
        return job.key in previous and all(p.is_file() for p in job.outputs)

    def run(
        self,
        engine: str = "local",
        retry: int = 0,
        workers: int = 1,
        address: str | None = None,
        progress: Progress | None = None,
    ) -> BatchReport:
        """Run the valid jobs (skipping those already done); see the module docstring."""
        if retry < 0:
            raise UsageError(f"retry {retry} must be 0 or more")
        if engine not in ("local", "ray"):
            raise UsageError(f"engine {engine!r} is unknown; use local or ray")
        notify = progress or (lambda event, job, details: None)
        t0 = time.perf_counter()
        previous = self.previous()
        results: dict[int, JobResult] = {}
        todo: list[Job] = []
        for job in self.jobs:
            if self.is_done(job, previous):
                results[job.index] = JobResult(job.index, job.line, job.kind, job.key, "skipped",
                                               [str(p) for p in job.outputs])  # fmt: skip
                notify("skipped", job, {})
            else:
                sweep_partial(job.outputs)
                todo.append(job)

        def record(result: JobResult) -> None:
            results[result.index] = result
            self._write_summary(results, time.perf_counter() - t0)

        loads: dict[str, int] = {}
        if engine == "local":
            models = Models()
            try:
                for unit in units(todo):
                    for result in _attempt_unit(unit, models, retry, notify):
                        record(result)
            finally:
                loads = dict(models.loads)
                models.close()
        else:
            from edgegen.batch_ray import run_on_ray

            loads = run_on_ray(
                units(todo), retry, workers, address, record, notify, Models, _attempt_unit,
                _failed,
            )  # fmt: skip
        ordered = [results[i] for i in sorted(results)]
        sheet = self._contact_sheet(ordered)
        seconds = time.perf_counter() - t0
        self._write_summary(results, seconds, sheet)
        return BatchReport(ordered, self.problems, seconds, self.summary_path, sheet, loads)

    def _write_summary(
        self, results: dict[int, JobResult], seconds: float, sheet: Path | None = None
    ) -> None:
        data = {
            "format": "edgegen-batch-summary",
            "version": SUMMARY_VERSION,
            "edgegen_version": __version__,
            "jobs_file": str(self.path),
            "seconds": round(seconds, 3),
            "contact_sheet": str(sheet) if sheet else None,
            "invalid": [str(p) for p in self.problems],
            "jobs": [results[i].__dict__ for i in sorted(results)],
        }
        atomic_write_text(self.summary_path, json.dumps(data, indent=2, ensure_ascii=False))

    def _contact_sheet(self, results: list[JobResult]) -> Path | None:
        """A grid of every PNG the batch's jobs have (thumbnails 160 px tall), or None."""
        from PIL import Image, ImageDraw

        images = [Path(o) for r in results if r.status != "failed" for o in r.outputs
                  if o.lower().endswith(".png") and Path(o).is_file()]  # fmt: skip
        if not images:
            return None
        thumb_h, cols = 160, min(6, len(images))
        thumbs = []
        for p in images:
            with Image.open(p) as im:
                im = im.convert("RGB")
                w = max(1, round(im.width * thumb_h / im.height))
                thumbs.append((p.name, im.resize((w, thumb_h), Image.Resampling.LANCZOS)))
        cell_w = max(t.width for _, t in thumbs)
        rows = -(-len(thumbs) // cols)
        sheet = Image.new("RGB", (cols * (cell_w + 8) + 8, rows * (thumb_h + 24) + 8), (24, 24, 24))
        draw = ImageDraw.Draw(sheet)
        for i, (name, t) in enumerate(thumbs):
            x, y = 8 + (i % cols) * (cell_w + 8), 8 + (i // cols) * (thumb_h + 24)
            sheet.paste(t, (x, y))
            draw.text((x, y + thumb_h + 4), name[:28], fill=(220, 220, 220))
        from edgegen.fileio import atomic_path

        with atomic_path(self.contact_path) as tmp:
            sheet.save(tmp, format="PNG")
        return self.contact_path


def units(jobs: list[Job]) -> list[list[Job]]:
    """The jobs in runs of up to ``GROUP_SIZE`` consecutive text-to-image generate jobs that
    share model and settings (their images are denoised as one batch: ~2x the throughput on
    the default model), the other jobs alone. Both engines run the same units, so their
    images agree byte for byte."""
    from edgegen.generate import GROUP_SIZE

    def key(job: Job) -> tuple | None:
        o = job.options
        if job.kind != "generate" or job.plan.edit is not None or len(job.plan.seeds) != 1:
            return None
        fields = ("model", "size", "steps", "guidance", "scheduler", "clip_skip")
        return tuple(str(o.get(f)) for f in fields)

    out: list[list[Job]] = []
    for job in jobs:
        k = key(job)
        last = out[-1] if out else None
        if k is not None and last and len(last) < GROUP_SIZE and key(last[0]) == k:
            last.append(job)
        else:
            out.append([job])
    return out


def _attempt_unit(unit: list[Job], models: Models, retry: int, notify: Progress) -> list[JobResult]:
    """A unit of :func:`units`: one batched denoise when the loaded model allows it, else (and
    whenever the batch fails) each job on its own with its retries."""
    if len(unit) > 1:
        from edgegen.generate import group_key, run_generate_group

        started = time.perf_counter()
        try:
            sd = models.pipeline(unit[0].options.get("model"))
            if len({group_key(j.plan, sd) for j in unit} | {None}) == 2:  # one key, not None
                for job in unit:
                    notify("start", job, {"attempt": 1})
                outs = run_generate_group([j.plan for j in unit], sd,
                                          lambda d, t: notify("progress", unit[0], {"done": d, "total": t}))  # fmt: skip
                share = (time.perf_counter() - started) / len(unit)
                results = []
                for job, paths in zip(unit, outs, strict=True):
                    result = JobResult(job.index, job.line, job.kind, job.key, "done",
                                       [str(p) for p in paths], share, 1)  # fmt: skip
                    notify("done", job, {"result": result})
                    results.append(result)
                return results
        except KeyboardInterrupt:
            raise
        except Exception:
            pass
    return [_attempt(job, models, retry, notify) for job in unit]


def _failed(job: Job, why: str) -> JobResult:
    return JobResult(job.index, job.line, job.kind, job.key, "failed", [], 0.0, 1, why)


def _attempt(job: Job, models: Models, retry: int, notify: Progress) -> JobResult:
    """Run ``job`` up to ``1 + retry`` times; the result of the last attempt."""
    error = None
    started = time.perf_counter()
    for attempt in range(1, retry + 2):
        notify("start", job, {"attempt": attempt})
        try:
            outputs = run_job(
                job, models, lambda d, t: notify("progress", job, {"done": d, "total": t})
            )
        except KeyboardInterrupt:
            raise
        except EdgegenError as e:
            error = e.describe(lambda o: o.replace("-", "_"))
        except Exception as e:  # one bad job must not stop the rest
            error = f"{type(e).__name__}: {e}"
        else:
            result = JobResult(job.index, job.line, job.kind, job.key, "done",
                               [str(p) for p in outputs], time.perf_counter() - started, attempt)  # fmt: skip
            notify("done", job, {"result": result})
            return result
    result = JobResult(job.index, job.line, job.kind, job.key, "failed", [],
                       time.perf_counter() - started, retry + 1, error)  # fmt: skip
    notify("failed", job, {"result": result})
    return result
