"""Property-based fuzzing (hypothesis) of the parsers that read user files: the script and
storyboard parser, the job file parser, the manifest reader and the PNG metadata reader.
Whatever the input, they return a value or raise one of edgegen's documented errors (an
EdgegenError, which the CLI prints as one line with its exit code) — nothing else."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgegen.errors import EdgegenError  # noqa: E402

SETTINGS = settings(max_examples=int(os.environ.get("EDGEGEN_FUZZ_EXAMPLES", 150)), deadline=None, derandomize="EDGEGEN_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
# JSON-like values, to mutate structured files with
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip
TOMLISH = st.text(alphabet=st.sampled_from(list('[]=".,#\n abcdefgxyz0123456789-_:\\\'{}')),
                  max_size=300)  # fmt: skip


def documented(call) -> None:
    try:
        call()
    except EdgegenError as e:
        assert "\n" not in e.describe().strip(), e.describe()


@SETTINGS
@given(text=st.text(max_size=400), suffix=st.sampled_from([".md", ".txt", ".toml"]))
def test_script_and_storyboard_parser(text, suffix):
    from edgegen.video import storyboard

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"script{suffix}"
        path.write_text(text, encoding="utf-8", errors="replace")
        documented(lambda: storyboard.validate(storyboard.load(path)))


@SETTINGS
@given(text=TOMLISH)
def test_storyboard_toml_shaped_text(text):
    from edgegen.video import storyboard

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "story.toml"
        path.write_text("[[scenes]]\n" + text, encoding="utf-8")
        documented(lambda: storyboard.validate(storyboard.load(path)))


@SETTINGS
@given(data=st.binary(max_size=300))
def test_script_bytes(data):
    from edgegen.video import storyboard

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.md"
        path.write_bytes(data)
        documented(lambda: storyboard.load(path))


JOB = st.fixed_dictionaries(
    {"kind": st.sampled_from(["generate", "speak", "render", "bogus"]) | JSON},
    optional={k: JSON | st.text(max_size=30) for k in
              ("prompt", "text", "script", "output", "seed", "size", "steps", "guidance",
               "speed", "timings", "init_image", "mask", "count")},
)  # fmt: skip


@SETTINGS
@given(jobs=st.lists(JOB | JSON, max_size=5), as_toml=st.booleans(), junk=st.text(max_size=40))
def test_job_file_parser(jobs, as_toml, junk):
    from edgegen.batch import read_jobs

    with tempfile.TemporaryDirectory() as tmp:
        if as_toml:
            path = Path(tmp) / "jobs.toml"
            path.write_text("[[jobs]]\n" + junk, encoding="utf-8")
        else:
            path = Path(tmp) / "jobs.jsonl"
            lines = [json.dumps(j, allow_nan=True) for j in jobs] + [junk]
            path.write_text("\n".join(lines), encoding="utf-8")
        documented(lambda: read_jobs(path))


def _manifest_like():
    from edgegen.converters.manifest import FORMAT

    base = {"format": FORMAT, "format_version": 1, "kind": "diffusion", "name": "m",
            "family": "sd1", "config": {}, "targets": {"mlx": {"components": {}}}}  # fmt: skip
    return st.builds(
        lambda changes, drop: {k: v for k, v in {**base, **changes}.items() if k not in drop},
        st.dictionaries(st.sampled_from(sorted(base) + ["quality", "defaults", "source"]), JSON,
                        max_size=4),
        st.sets(st.sampled_from(sorted(base)), max_size=3),
    )  # fmt: skip


@SETTINGS
@given(data=_manifest_like() | JSON, raw=st.none() | st.binary(max_size=80))
def test_manifest_reader(data, raw):
    from edgegen.converters.manifest import Manifest

    with tempfile.TemporaryDirectory() as tmp:
        if raw is None:
            (Path(tmp) / "manifest.json").write_text(json.dumps(data, allow_nan=True))
        else:
            (Path(tmp) / "manifest.json").write_bytes(raw)
        documented(lambda: Manifest.read(Path(tmp)))


A1111 = st.builds(
    lambda prompt, fields, extra: f"{prompt}\nNegative prompt: x\n"
    + ", ".join(f"{k}: {v}" for k, v in fields.items()) + extra,
    st.text(max_size=60),
    st.dictionaries(st.sampled_from(["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model",
                                     "Clip skip", "Schedule type", "Hires upscale"]),
                    st.text(max_size=15), max_size=6),
    st.text(max_size=30),
)  # fmt: skip


@SETTINGS
@given(text=A1111 | st.text(max_size=300) | JSON.map(json.dumps))
def test_png_parameters_text(text):
    from edgegen.pngparams import parse_parameters

    documented(lambda: parse_parameters(text))


@SETTINGS
@given(text=A1111 | st.text(max_size=200), truncate=st.integers(0, 400))
def test_png_file_reader(text, truncate):
    from PIL import Image, PngImagePlugin

    from edgegen.pngparams import read_png_parameters

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        path.write_bytes(data if truncate == 0 else data[:truncate])
        documented(lambda: read_png_parameters(path))
