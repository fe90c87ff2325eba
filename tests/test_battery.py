"""The bad-input battery (issue 18): bad weights, wrong model folders, malformed storyboards
and job files, unreadable and mismatched images and masks, unwritable outputs, a full disk,
huge prompts and exotic Unicode, across every command. Each case must give one line on
stderr naming the problem, a documented exit code, no traceback, and no output left behind.
The test prints how many cases it ran."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CODES = {
    2,
    3,
    4,
    5,
    6,
    8,
}  # README "Exit codes": usage, not found, invalid model, input, output, job


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    fragment: str  # what the one line must say
    setup: object = None  # callable(work: Path) -> None, run before
    stdin: str | None = None
    env: dict = field(default_factory=dict)
    full_disk: bool = False
    allowed: set = field(default_factory=set)  # files the command may write (a batch summary)
    only_line: bool = False  # found before any work: stderr is that one line and nothing else


def png(path: Path, w: int = 64, h: int = 64, value: int = 120) -> None:
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def broken_model(kind: str):
    def setup(work: Path) -> None:
        src = Path(os.environ["BATTERY_TINY_SD1"])
        dst = work / "model"
        shutil.copytree(src, dst)
        weights = next((dst / "unet").glob("*.safetensors"))
        data = weights.read_bytes()
        if kind == "zero":
            weights.write_bytes(b"")
        elif kind == "truncated":
            weights.write_bytes(data[: len(data) // 2])
        elif kind == "garbage":
            weights.write_bytes(os.urandom(4096))
        elif kind == "png":
            Image.new("RGB", (8, 8)).save(weights, format="PNG")
        elif kind == "no-unet":
            shutil.rmtree(dst / "unet")
        elif kind == "bad-config":
            (dst / "unet" / "config.json").write_text("{not json")
        elif kind == "flux":
            index = json.loads((dst / "model_index.json").read_text())
            index["_class_name"] = "FluxPipeline"
            (dst / "model_index.json").write_text(json.dumps(index))

    return setup


def write(name: str, content: str | bytes):
    def setup(work: Path) -> None:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return setup


def both(*setups):
    def setup(work: Path) -> None:
        for s in setups:
            s(work)

    return setup


def images(*specs):
    def setup(work: Path) -> None:
        for name, w, h in specs:
            png(work / name, w, h)

    return setup


def _noise_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


NOISE = _noise_png()  # incompressible: its ×4 upscale is far more than a full disk takes
SCENE = "A small boat sails across a calm bay at dawn.\n"
GEN = ["generate", "a red sun", "--steps", "1"]

CASES = [
    # weights and model folders
    Case("zero-byte weights", [*GEN, "--model", "model", "-o", "x.png"], 4, "model/unet", broken_model("zero")),
    Case("truncated weights", [*GEN, "--model", "model", "-o", "x.png"], 4, "truncated", broken_model("truncated")),
    Case("garbage weights", [*GEN, "--model", "model", "-o", "x.png"], 4, "safetensors", broken_model("garbage")),
    Case("PNG as weights", [*GEN, "--model", "model", "-o", "x.png"], 4, "safetensors", broken_model("png")),
    Case("folder without a UNet", [*GEN, "--model", "model", "-o", "x.png"], 4, "unet", broken_model("no-unet")),
    Case("unreadable config", [*GEN, "--model", "model", "-o", "x.png"], 4, "config.json", broken_model("bad-config")),
    Case("other model family", [*GEN, "--model", "model", "-o", "x.png"], 4, "FluxPipeline", broken_model("flux")),
    Case("convert a truncated model", ["convert", "model", "--to", "mlx", "--name", "t"], 4, "truncated", broken_model("truncated"), only_line=True),
    Case("convert a pickle", ["convert", "model.ckpt", "--to", "mlx"], 4, ".ckpt", write("model.ckpt", b"\x80\x04K\x01.")),
    Case("convert a missing path", ["convert", "nothing-here", "--to", "mlx"], 3, "nothing-here"),
    Case("convert: bad quantize", ["convert", "model", "--to", "mlx", "--quantize", "3"], 2, "3", broken_model("zero")),
    Case("ncnn .param without .bin", ["convert", "up.param", "--to", "mlx"], 3, "up.bin", write("up.param", "7767517\n1 1\nInput data 0 1 data\n")),
    Case("garbage .param", ["convert", "up.param", "--to", "mlx"], 4, "up.param", both(write("up.param", "hello"), write("up.bin", b"\0" * 64))),
    Case("unknown store model", [*GEN, "--model", "no-such-model", "-o", "x.png"], 3, "no-such-model"),
    Case("models info unknown", ["models", "info", "no-such-model"], 3, "no-such-model"),
    # scripts and storyboards
    Case("empty script", ["render", "s.md"], 5, "s.md", write("s.md", "")),
    Case("binary script", ["render", "s.md"], 5, "s.md", write("s.md", b"\xff\xfe\x00\x81" * 50)),
    Case("storyboard syntax", ["render", "s.toml"], 5, "s.toml", write("s.toml", "[[scenes]\ntext = 'x'\n")),
    Case("storyboard unknown style", ["render", "s.toml"], 5, "noir", write("s.toml", "style = 'noir'\n[[scenes]]\nnarration = 'A boat.'\n")),
    Case("storyboard bad size", ["render", "s.toml"], 5, "12x", write("s.toml", "size = '12x'\n[[scenes]]\nnarration = 'A boat.'\n")),
    Case("storyboard without scenes", ["render", "s.toml"], 5, "scene", write("s.toml", "style = 'anime'\n")),
    Case("storyboard wrong type", ["render", "s.toml"], 5, "seed", write("s.toml", "seed = 'abc'\n[[scenes]]\nnarration = 'A boat.'\n")),
    Case("render to .avi", ["render", "s.md", "-o", "v.avi"], 2, "v.avi", write("s.md", SCENE)),
    Case("music that does not decode", ["render", "s.md", "--music", "m.mp3"], 5, "m.mp3", both(write("s.md", SCENE), write("m.mp3", b"ID3" + os.urandom(2000)))),
    # job files
    Case("job line not JSON", ["batch", "j.jsonl"], 5, "j.jsonl:1", write("j.jsonl", "{kind: generate\n")),
    Case("job of unknown kind", ["batch", "j.jsonl"], 5, "paint", write("j.jsonl", '{"kind": "paint", "output": "a.png"}\n')),
    Case("job without output", ["batch", "j.jsonl"], 5, "output", write("j.jsonl", '{"kind": "generate", "prompt": "x"}\n')),
    Case("job with a bad size", ["batch", "j.jsonl"], 5, "width 100", write("j.jsonl", '{"kind": "generate", "prompt": "x", "size": "100x100", "output": "a.png"}\n')),
    Case("jobs writing one file", ["batch", "j.jsonl"], 5, "also written", write("j.jsonl", '{"kind": "speak", "text": "a", "output": "a.wav"}\n{"kind": "speak", "text": "b", "output": "a.wav"}\n'), allowed={"a.wav"}),
    Case("job TOML syntax", ["batch", "j.toml"], 5, "j.toml", write("j.toml", "[[jobs]\nkind = 'speak'\n")),
    Case("job kind not a string", ["batch", "j.jsonl"], 5, "kind", write("j.jsonl", '{"kind": ["generate"], "output": "a.png"}\n')),
    # images and masks
    Case("init image is text", [*GEN, "-i", "in.png", "-o", "x.png"], 5, "in.png", write("in.png", "not an image")),
    Case("zero-byte init image", [*GEN, "-i", "in.png", "-o", "x.png"], 5, "in.png", write("in.png", b"")),
    Case("truncated init image", [*GEN, "-i", "in.png", "-o", "x.png"], 5, "in.png", write("in.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0@")),
    Case("mask of another size", [*GEN, "-i", "in.png", "--mask", "m.png", "-o", "x.png"], 5, "m.png", images(("in.png", 64, 64), ("m.png", 32, 48))),
    Case("mask without image", [*GEN, "--mask", "m.png", "-o", "x.png"], 2, "--mask", images(("m.png", 64, 64))),
    Case("extend twice", [*GEN, "-i", "in.png", "--extend", "down:64", "--extend-to", "128x128", "-o", "x.png"], 2, "cannot be combined", images(("in.png", 64, 64))),
    Case("upscale a text file", ["upscale", "in.png", "-o", "big.png"], 5, "in.png", write("in.png", "text")),
    Case("upscale by 5", ["upscale", "in.png", "--scale", "5", "-o", "big.png"], 2, "'5' is not one of", images(("in.png", 16, 16))),
    Case("from-png of a JPEG", ["generate", "--from-png", "p.jpg"], 5, "p.jpg", write("p.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100)),
    Case("huge size", ["generate", "x", "--size", "8192x8192", "-o", "x.png"], 2, "would fit"),
    # outputs
    Case("output under a file", [*GEN, "-o", "f.txt/x.png"], 6, "f.txt", write("f.txt", "x")),
    Case("speak under a file", ["speak", "Hello.", "-o", "f.txt/x.wav"], 6, "f.txt", write("f.txt", "x")),
    Case("generate to .jpg", [*GEN, "-o", "x.jpg"], 2, "x.jpg"),
    Case("speak to .xyz", ["speak", "Hello.", "-o", "x.xyz"], 2, ".xyz"),
    Case("timings to .doc", ["speak", "Hello.", "-o", "x.wav", "--timings", "t.doc"], 2, "t.doc"),
    Case("disk full: image", [*GEN, "-o", "x.png"], 6, "x.png", full_disk=True),
    Case("disk full: speech", ["speak", "Hello there, this is long enough to fill a block.", "-o", "x.wav"], 6, "x.wav", full_disk=True),
    Case("disk full: upscale", ["upscale", "in.png", "-o", "big.png"], 6, "big.png", write("in.png", NOISE), full_disk=True),
    # options, prompts and text
    Case("steps 0", ["generate", "x", "--steps", "0", "-o", "x.png"], 2, "steps"),
    Case("guidance -1", ["generate", "x", "--guidance", "-1", "-o", "x.png"], 2, "guidance"),
    Case("size not a multiple of 64", ["generate", "x", "--size", "100x100", "-o", "x.png"], 2, "100"),
    Case("unknown sampler", ["generate", "x", "--scheduler", "bogus", "-o", "x.png"], 2, "bogus"),
    Case("empty speech", ["speak", "", "-o", "x.wav"], 2, "text"),
    Case("speech of only symbols", ["speak", "🙂🙂 ✨", "-o", "x.wav"], 2, "nothing this voice can speak"),
    Case("speed 10", ["speak", "Hi.", "--speed", "10", "-o", "x.wav"], 2, "speed 10"),
    Case("speak a missing file", ["speak", "-f", "missing.txt", "-o", "x.wav"], 5, "missing.txt"),
    Case("run: bad image protocol", ["run"], 2, "jpeg", stdin="", env={"EDGEGEN_IMAGE_PROTOCOL": "jpeg"}),
    Case("run: out is a file", ["run", "--out", "f.txt"], 2, "f.txt", write("f.txt", "x"), stdin=""),
]  # fmt: skip


def _full_disk() -> None:
    """The disk fills up: any file write past 16 KB fails (EFBIG, as ENOSPC would)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def tiny_env(tiny_sd1):
    os.environ["BATTERY_TINY_SD1"] = str(tiny_sd1)
    yield
    os.environ.pop("BATTERY_TINY_SD1", None)


def test_bad_input_battery(tmp_path, tiny_env, capsys):
    failures = []
    for i, case in enumerate(CASES):
        work = tmp_path / f"case{i:02d}"
        work.mkdir()
        if case.setup:
            case.setup(work)
        before = _files(work)
        env = dict(os.environ, **case.env)
        r = subprocess.run(
            [sys.executable, "-m", "edgegen", *case.args],
            cwd=work,
            env=env,
            input=case.stdin,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=_full_disk if case.full_disk else None,
        )
        # The error is one line ("Error: …"; a batch lists each bad job as "invalid: …");
        # progress and summary lines may come before it.
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("Error:", "invalid:"))]
        problems = []
        if r.returncode != case.code:
            problems.append(f"exit {r.returncode}, expected {case.code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} error lines on stderr")
        elif case.fragment.lower() not in lines[0].lower():
            problems.append(f"the line does not say {case.fragment!r}")
        if "Traceback" in r.stderr:
            problems.append("a traceback")
        if case.only_line and len([ln for ln in r.stderr.splitlines() if ln.strip()]) != 1:
            problems.append("work was done before the error")
        summary = {
            p for p in _files(work) if p.endswith(".summary.json") and case.args[0] == "batch"
        }
        left = _files(work) - before - case.allowed - summary
        if left:
            problems.append(f"left {sorted(left)}")
        if problems:
            failures.append(
                f"{case.name}: {'; '.join(problems)}\n    stderr: {r.stderr.strip()[-400:]}"
            )
    with capsys.disabled():
        print(f"\nbad-input battery: {len(CASES)} cases, {len(CASES) - len(failures)} passed")
    assert len(CASES) >= 40
    assert all(case.code in CODES for case in CASES)
    assert not failures, "\n".join(failures)
