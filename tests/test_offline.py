"""Every command runs with no network at all (issue 18): in a fresh network namespace
(``unshare -n``: not even loopback) where the machine allows it, and in every case with a
``sitecustomize`` that refuses and records any internet socket connection or name lookup, so
an attempt cannot hide behind a caught error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

GUARD = textwrap.dedent(
    """
    import os, socket
    _log = os.environ["EDGEGEN_NET_LOG"]

    def _refuse(what):
        with open(_log, "a") as f:
            f.write(what + "\\n")
        raise OSError(f"network disabled by the offline test: {what}")

    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(f"connect {address!r}")
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(f"connect_ex {address!r}")
        return _connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = lambda host, *a, **k: _refuse(f"getaddrinfo {host!r}")
    """
)


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and (
        subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    )


UNSHARE = _unshare_works()


@pytest.fixture
def offline(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = dict(os.environ, PYTHONPATH=f"{guard}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               EDGEGEN_NET_LOG=str(log))  # fmt: skip

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "edgegen", *args]
        if UNSHARE:
            cmd = ["unshare", "-n", *cmd]
        r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True,
                           cwd=tmp_path, timeout=600)  # fmt: skip
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert not log.exists() or not log.read_text(), log.read_text()
        return r

    return run


def test_every_command_runs_offline(offline, tmp_path, tiny_sd1):
    print("network namespace:", "unshare -n" if UNSHARE else "not available; socket guard only")
    offline("convert", str(tiny_sd1), "--to", "mlx", "--name", "tiny")
    offline("generate", "a red sun", "--steps", "2", "--seed", "1", "-o", "sun.png")
    offline("generate", "a red sun", "--model", "tiny", "--steps", "2", "--size", "64x64",
            "-o", "tiny.png")  # fmt: skip
    offline("speak", "Hello there.", "-o", "hello.mp3", "--timings", "hello.srt")
    (tmp_path / "story.md").write_text("A small boat sails across a calm bay at dawn.\n")
    offline("render", "story.md", "--draft", "-o", "story.mp4")
    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(tmp_path / "small.png")
    offline("upscale", "small.png", "-o", "big.png")
    jobs = [{"kind": "generate", "prompt": "a boat", "steps": 2, "output": "b.png"},
            {"kind": "speak", "text": "Hi.", "output": "hi.wav"}]  # fmt: skip
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(j) for j in jobs) + "\n")
    offline("batch", "jobs.jsonl")
    r = offline("run", "--out", "session", stdin="/steps 2\na lighthouse\n/speak Bye.\n")
    assert len(r.stdout.splitlines()) == 2
    for name in ("sun.png", "tiny.png", "hello.mp3", "hello.srt", "story.mp4", "big.png",
                 "b.png", "hi.wav"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name


def test_the_guard_catches_a_connection(tmp_path):
    """The guard itself works: a connection attempt is refused and recorded."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = dict(os.environ, PYTHONPATH=str(guard), EDGEGEN_NET_LOG=str(log))
    code = "import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), 1)\nexcept OSError as e:\n print(e)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "network disabled" in r.stdout and "192.0.2.1" in log.read_text()


def test_a_model_id_not_on_disk_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    r = subprocess.run([sys.executable, "-m", "edgegen", "generate", "x", "--model",
                        "someone/some-model", "-o", str(tmp_path / "x.png")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 3 and r.stderr.count("\n") == 1
    assert "'someone/some-model' is neither a folder nor in the Hugging Face cache" in r.stderr
    assert "edgegen never downloads; fetch it once with `hf download` or pass a folder" in r.stderr
