"""``edgegen batch``: jobs checked up front, run with warm models, resumable after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgegen.batch import Batch, read_jobs
from edgegen.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def gen(i: int, **extra) -> dict:
    # The default model at 64x128 in 2 steps: ~0.3 s per job on the CPU.
    return {"kind": "generate", "prompt": f"a red sun over a calm sea, number {i}",
            "output": f"out/img-{i:02d}.png", "size": "64x128", "steps": 2, "seed": i, **extra}  # fmt: skip


def write_jsonl(path: Path, jobs: list) -> Path:
    path.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    return path


def test_twenty_jobs_with_two_invalid_report_both_and_run_the_rest(tmp_path):
    jobs = [gen(i) for i in range(20)]
    jobs[4] = gen(4, steps="many")  # line 5
    jobs[11] = {**gen(11), "kind": "paint"}  # line 12
    path = write_jsonl(tmp_path / "jobs.jsonl", jobs)
    events = []
    b = Batch.open(path)
    assert [str(p) for p in b.problems] == [
        f'{path}:5: steps: must be an integer, not "many"',
        f'{path}:12: kind: "paint" is not a job kind; use one of generate, speak, render',
    ]
    assert len(b.jobs) == 18
    report = b.run(progress=lambda e, job, d: events.append(e))
    assert report.count("done") == 18 and report.count("failed") == 0
    assert report.loads == {"pipeline": 1}  # one model load for all 18 jobs
    summary = json.loads(report.summary.read_text())
    on_disk = sorted(p.name for p in (tmp_path / "out").iterdir())
    listed = sorted(Path(o).name for j in summary["jobs"] for o in j["outputs"])
    assert on_disk == listed and len(on_disk) == 18
    assert all(j["status"] == "done" and len(j["key"]) == 64 for j in summary["jobs"])
    assert len(summary["invalid"]) == 2
    with Image.open(report.contact_sheet) as sheet:
        assert sheet.width > 6 * 60 and sheet.height > 3 * 160
    for p in (tmp_path / "out").iterdir():
        with Image.open(p) as im:
            assert im.size == (64, 128) and "Steps: 2" in im.info["parameters"]
    # Unchanged jobs are skipped on a re-run; a changed one runs again.
    again = Batch.open(path).run()
    assert again.count("skipped") == 18 and again.count("done") == 0
    jobs[0] = gen(0, steps=3)
    write_jsonl(path, jobs)
    third = Batch.open(path).run()
    assert third.count("done") == 1 and third.count("skipped") == 17


def test_bad_input_is_listed_up_front_with_file_and_line(tmp_path):
    (tmp_path / "script.md").write_text("The sun rises.\n")
    path = write_jsonl(tmp_path / "jobs.jsonl", [
        "{not json",
        {"kind": "generate", "prompt": "x", "output": "a.png", "colour": "red"},
        {"kind": "generate", "prompt": "x", "output": "b.png", "init_image": "missing.png"},
        {"kind": "speak", "text": "hello", "output": "c.mp3"},
        {"kind": "render", "output": "d.mp4"},
        {"kind": "generate", "prompt": "x", "output": "e.png", "guidance": -2, "size": "64x128"},
        {"kind": "speak", "text": "fine", "output": "ok.wav"},
        {"kind": "render", "script": "script.md", "output": "f.mp4", "style": "no-such-style"},
        {"kind": "speak", "text": "again", "output": "ok.wav"},
    ])  # fmt: skip
    jobs, problems = read_jobs(path)
    text = [str(p) for p in problems]
    assert len(text) == 8, text
    assert text[0].startswith(f"{path}:1: not a JSON object")
    assert "2: colour: generate has no option 'colour'; valid: prompt, output" in text[1]
    assert "3: init_image: file" in text[2] and "missing.png' does not exist" in text[2]
    assert "4: output: " in text[3] and "must end in .wav" in text[3]
    assert "5: script: a render job needs 'script'" in text[4]
    assert ":6: " in text[5] and "guidance" in text[5]
    assert ":8: " in text[6] and "no-such-style" in text[6]
    assert ":9: output: " in text[7] and "also written by the job on line 7" in text[7]
    assert [j.line for j in jobs] == [7]


def test_the_command_reports_problems_and_exits_with_documented_codes(tmp_path):
    path = write_jsonl(tmp_path / "jobs.jsonl", [gen(0), {"kind": "speak"}])
    r = CliRunner().invoke(cli, ["batch", str(path)])
    assert r.exit_code == 5, r.output
    assert "invalid:" in r.output and ":2: text: a speak job needs 'text'" in r.output
    assert "1 ran, 0 skipped (already done), 0 failed, 1 invalid" in r.output
    assert (tmp_path / "out" / "img-00.png").is_file()
    # A job that fails at run time (an unknown model) is recorded; exit 8.
    path = write_jsonl(tmp_path / "two.jsonl", [gen(1, model="no-such-model"), gen(2)])
    r = CliRunner().invoke(cli, ["batch", str(path), "--retry", "1"])
    assert r.exit_code == 8, r.output
    summary = json.loads((tmp_path / "two.summary.json").read_text())
    failed = summary["jobs"][0]
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert "no-such-model" in failed["error"] and summary["jobs"][1]["status"] == "done"
    r = CliRunner().invoke(cli, ["batch", str(tmp_path / "none.jsonl")])
    assert r.exit_code == 5 and "does not exist" in r.output and "Traceback" not in r.output


def test_toml_jobs_speak_and_render(tmp_path):
    (tmp_path / "story.md").write_text("The sun rises over the sea.\n\nThe night falls.\n")
    (tmp_path / "jobs.toml").write_text(
        '[[jobs]]\nkind = "speak"\ntext = "Hello there."\noutput = "hello.wav"\n'
        'timings = "hello.srt"\n\n'
        '[[jobs]]\nkind = "render"\nscript = "story.md"\noutput = "story.mp4"\n'
        'size = "270x480"\nfps = 6\nupscale = false\ndraft = true\n'
    )
    report = Batch.open(tmp_path / "jobs.toml").run()
    assert report.count("done") == 2, [r.error for r in report.results]
    assert (tmp_path / "hello.wav").stat().st_size > 1000 and "Hello" in (
        tmp_path / "hello.srt"
    ).read_text()
    import av

    with av.open(str(tmp_path / "story.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (270, 480)
    assert report.loads["voice"] == 1  # speak and render share the loaded voice


KILL_SCRIPT = """
import sys
from edgegen.batch import Batch
Batch.open(sys.argv[1]).run()
"""


@pytest.mark.slow
def test_a_batch_killed_mid_way_resumes_without_duplicates(tmp_path):
    path = write_jsonl(tmp_path / "jobs.jsonl", [gen(i, steps=6) for i in range(10)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], env=env)
    summary = tmp_path / "jobs.summary.json"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill it once a few jobs are recorded
        try:
            done = sum(j["status"] == "done" for j in json.loads(summary.read_text())["jobs"])
        except (OSError, ValueError):
            done = 0
        if done >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {j["key"] for j in json.loads(summary.read_text())["jobs"] if j["status"] == "done"}
    assert 3 <= len(finished) < 10
    visible = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    for p in visible:  # whatever is under a final name is a whole image
        with Image.open(p) as im:
            im.load()
    report = Batch.open(path).run()
    assert report.count("skipped") == len(finished)
    assert report.count("done") == 10 - len(finished)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"img-{i:02d}.png" for i in range(10)]  # once each, no temporaries left
    for p in (tmp_path / "out").iterdir():
        with Image.open(p) as im:
            assert np.asarray(im).shape == (128, 64, 3)


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    """A Ray head on the loopback address with 2 CPUs, started and stopped by the test."""
    import shutil
    import socket

    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_bin is None:
        pytest.fail("Ray is not installed: scripts/setup.sh --dev installs it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_bytes_and_loads_once_per_actor(tmp_path, ray_cluster):
    jobs = [gen(i) for i in range(6)]
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for d in (local_dir, ray_dir):
        d.mkdir()
        write_jsonl(d / "jobs.jsonl", jobs)
    local = Batch.open(local_dir / "jobs.jsonl").run()
    remote = Batch.open(ray_dir / "jobs.jsonl").run(engine="ray", workers=2, address=ray_cluster)
    assert remote.count("done") == 6, [r.error for r in remote.results]
    assert remote.loads == {"pipeline": 2}  # one load per actor, not per job
    for i in range(6):
        name = f"out/img-{i:02d}.png"
        assert (ray_dir / name).read_bytes() == (local_dir / name).read_bytes(), name
    assert local.count("done") == 6
    again = Batch.open(ray_dir / "jobs.jsonl").run(engine="ray", workers=2, address=ray_cluster)
    assert again.count("skipped") == 6


def test_an_unreachable_ray_address_is_one_line_with_exit_9(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_jsonl(tmp_path / "jobs.jsonl", [gen(0)])
    r = CliRunner().invoke(
        cli, ["batch", str(path), "--engine", "ray", "--address", f"127.0.0.1:{port}"]
    )
    assert r.exit_code == 9, r.output
    assert (
        f"no Ray cluster answers at '127.0.0.1:{port}'" in r.output and "Traceback" not in r.output
    )
    assert not (tmp_path / "out").exists()


def test_compatible_generate_jobs_are_denoised_together_and_match_single_runs(tmp_path):
    from edgegen.batch import units
    from edgegen.generate import run_generate
    from edgegen.pipelines import load_pipeline

    jobs = [gen(i) for i in range(6)] + [gen(6, steps=3), gen(7, scheduler="euler_a")]
    path = write_jsonl(tmp_path / "jobs.jsonl", jobs)
    b = Batch.open(path)
    assert [len(u) for u in units(b.jobs)] == [4, 2, 1, 1]
    report = b.run()
    assert report.count("done") == 8
    sd = load_pipeline(None)
    for job in b.jobs[:6]:
        alone = tmp_path / f"alone-{job.index}.png"
        plan = job.plan.__class__(**{**job.plan.__dict__, "paths": [alone]})
        run_generate(plan, sd)
        a = np.asarray(Image.open(alone)).astype(int)
        g = np.asarray(Image.open(job.outputs[0])).astype(int)
        assert np.abs(a - g).max() <= 2 and np.abs(a - g).mean() < 0.05
        assert Image.open(alone).info["parameters"] == Image.open(job.outputs[0]).info["parameters"]


def test_sdxl_conditioning_of_a_prompt_batch_equals_each_prompts_own(tiny_sdxl):
    import mlx.core as mx

    from edgegen.params import GenerationParams
    from edgegen.pipelines import load_pipeline

    sd = load_pipeline(tiny_sdxl)
    p = GenerationParams("x", "", width=64, height=128)
    pairs = [("a lighthouse", ""), ("a red fox", "blurry")]
    context, added = sd.conditioning(p, 2, True, pairs)
    for i, (prompt, negative) in enumerate(pairs):
        one, one_added = sd.conditioning(
            GenerationParams(prompt, negative, width=64, height=128), 1, True
        )
        for got, want in ((context, one), (added["text_embeds"], one_added["text_embeds"])):
            np.testing.assert_allclose(np.array(got[i]), np.array(want[0]), atol=1e-5)  # uncond
            np.testing.assert_allclose(np.array(got[2 + i]), np.array(want[1]), atol=1e-5)  # cond
    assert mx.all(context[0] == 0)  # an empty negative is zeros (force_zeros_for_empty_prompt)


def test_speak_options_are_checked_as_the_voice_checks_them(tmp_path):
    path = write_jsonl(tmp_path / "jobs.jsonl", [
        {"kind": "speak", "text": "hi", "output": "a.wav", "speed": 9},
        {"kind": "speak", "text": "hi", "output": "b.wav", "noise_w": 3},
    ])  # fmt: skip
    _, problems = read_jobs(path)
    assert [p.line for p in problems] == [1, 2]
    assert "speed 9.0 is out of range; use 0.25 to 4.0" in str(problems[0])
    assert "noise_w 3.0 is out of range; use 0 to 2" in str(problems[1])
