"""SIGINT and SIGTERM during convert, render and batch leave no partial artifact or file, a
batch stays resumable, and the exit status is 130 / 143 (issue 18 item 8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgegen", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(path_check, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path_check():
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".gitignore")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_render_leaves_no_partial_video(tmp_path, sig):
    (tmp_path / "story.md").write_text(
        "\n\n".join(f"Scene {i}: a small boat sails across a calm bay." for i in range(6)) + "\n"
    )
    proc = start(["render", "story.md", "--draft", "-o", "story.mp4"], tmp_path)
    time.sleep(6)  # mid-way: the whole render takes ~30 s
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == CODES[sig], err
    assert not (tmp_path / "story.mp4").exists() and not (tmp_path / "story.srt").exists()
    assert not [n for n in hidden(tmp_path) if n.startswith(".story.")]
    assert "Traceback" not in err and err.strip().splitlines()[-1] in (
        "Interrupted.",
        "Terminated.",
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_batch_stops_cleanly_and_resumes(tmp_path, sig):
    jobs = [{"kind": "generate", "prompt": f"a boat {i}", "steps": 30, "output": f"out/{i}.png"}
            for i in range(8)]  # fmt: skip
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(j) for j in jobs) + "\n")
    proc = start(["batch", "jobs.jsonl"], tmp_path)
    # a finished image (pathlib's glob also matches the hidden temporary files)
    wait_for(lambda: any(not p.name.startswith(".") for p in (tmp_path / "out").glob("*.png")),
             proc)  # fmt: skip
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == CODES[sig], err
    done = sorted(p.name for p in (tmp_path / "out").glob("[!.]*.png"))
    assert 1 <= len(done) < 8 and not hidden(tmp_path / "out")
    summary = tmp_path / "jobs.summary.json"  # written after each unit of jobs, atomically
    if summary.exists():
        json.loads(summary.read_text())
    r = subprocess.run([sys.executable, "-m", "edgegen", "batch", "jobs.jsonl"], cwd=tmp_path,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


def test_convert_interrupted_at_any_moment_leaves_no_partial_artifact(tmp_path, tiny_sd1):
    """The conversion is short, so it is interrupted at spread-out moments: whenever the
    signal comes, the artifact is whole or absent, and no temporary files are left."""
    home = tmp_path / "home"
    env = dict(os.environ, EDGEGEN_HOME=str(home))
    outcomes = set()
    for i, delay in enumerate([0.2, 0.5, 0.8, 1.1, 1.4, 1.8]):
        sig = signal.SIGINT if i % 2 else signal.SIGTERM
        proc = subprocess.Popen([sys.executable, "-m", "edgegen", "convert", str(tiny_sd1),
                                 "--to", "mlx", "--name", f"m{i}"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        artifact = home / "models" / f"m{i}"
        if proc.returncode == 0:
            outcomes.add("finished")
            assert (artifact / "manifest.json").is_file()
        else:
            outcomes.add("stopped")
            # -sig: the signal came while Python was still starting, before edgegen's
            # handlers were installed: nothing had begun, so nothing can be partial
            assert proc.returncode in (CODES[sig], -sig), err
            if artifact.exists():  # the signal came after the artifact was in place: it is whole
                from edgegen.converters.manifest import Manifest

                assert Manifest.read(artifact).name == f"m{i}"
        leftovers = hidden(home) if home.exists() else []
        assert not leftovers, (delay, leftovers)
    assert "stopped" in outcomes  # at least one run was really interrupted
