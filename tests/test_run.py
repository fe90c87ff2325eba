"""``edgegen run``: the real command in a pseudo-terminal (pexpect), from a pipe, and the
session's logic in process. The built-in model makes each image in well under a second at a
few steps, so these run the real pipeline."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\a]*\a|\x1b_G[^\x1b]*\x1b\\|\r")
PROMPT = "edgegen>"


def clean(text: str) -> str:
    """What a reader sees: colours, cursor moves and pictures taken out."""
    return ANSI.sub("", text)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def parameters(path: Path) -> str:
    with Image.open(path) as im:
        return im.info["parameters"]


class Terminal:
    """``edgegen run`` in a pseudo-terminal, 100×40."""

    def __init__(self, out: Path, protocol: str = "blocks", *extra: str) -> None:
        env = dict(os.environ, EDGEGEN_IMAGE_PROTOCOL=protocol, TERM="xterm-256color")
        env["XDG_STATE_HOME"] = str(out.parent / "state")  # readline history stays in tmp
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "edgegen", "run", "--out", str(out), *extra],
            env=env,
            encoding="utf-8",
            dimensions=(40, 100),
            timeout=180,
        )
        self.child.logfile_read = self.log
        self.child.expect(PROMPT)

    def send(self, line: str) -> str:
        """Type ``line``; what the terminal showed until the next prompt, cleaned."""
        mark = len(self.log.getvalue())
        self.child.sendline(line)
        self.child.expect(PROMPT)
        return clean(self.log.getvalue()[mark:])

    @property
    def raw(self) -> str:
        return self.log.getvalue()

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


def test_session_in_a_terminal(tmp_path):
    out = tmp_path / "images"
    term = Terminal(out, "kitty")
    start = clean(term.raw)
    assert re.search(r"steps\s+20\b", start) and re.search(r"seed\s+random", start)

    shown = term.send("/steps 3")
    assert re.search(r"steps\s+3\b", shown)
    assert re.search(r"size\s+128x192", term.send("/size 128x192"))
    assert re.search(r"seed\s+5\b", term.send("/seed 5"))

    first = term.send("a red boat on a calm sea")
    assert (out / "0001-5.png").is_file(), first
    chunk = parameters(out / "0001-5.png")
    assert "Steps: 3," in chunk and "Size: 128x192" in chunk and "Seed: 5," in chunk
    assert re.search(r"#1 .*0001-5\.png\s+128x192 · 3 steps", first)

    # the picture went to the terminal as kitty graphics: the PNG of the image itself
    payload = "".join(re.findall(r"\x1b_G[^;]*;([^\x1b]*)\x1b\\", term.raw))
    shown_image = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
    assert np.array_equal(shown_image, pixels(out / "0001-5.png"))

    second = term.send("a red boat on a calm sea")
    assert np.array_equal(pixels(out / "0002-5.png"), pixels(out / "0001-5.png"))
    assert "loading" not in second  # the model stayed loaded
    assert clean(term.raw).count("loaded edgegen-default") == 1

    for bad, fragment in [
        ("/bogus", "unknown command '/bogus'"),
        ("/steps x", "steps 'x' is not valid"),
        ("/steps 0", "steps 0 is out of range"),
        ("/size 100x100", "width 100 is not a multiple of 64"),
        ("/size big", "size 'big' is not WIDTHxHEIGHT"),
        ("/guidance -1", "guidance -1 is out of range"),
        ("/sampler foo", "sampler 'foo' is unknown"),
        ("/style noir", "style 'noir' is unknown"),
        ("/open 9", "result 9 is not in this session"),
        ("/variations 99", "variations 99 is out of range"),
        ("/model /no/such/model", "/no/such/model"),
        ("/render missing.md", "missing.md: script: file not found"),
    ]:
        shown = term.send(bad)
        errors = [line for line in shown.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], shown
        assert "Traceback" not in shown
    assert re.search(r"model\s+edgegen-default", term.send("/seed 5"))  # still the same model

    varied = term.send("/variations 2")
    assert (out / "0003-6.png").is_file() and (out / "0003-7.png").is_file(), varied
    history = term.send("/history")
    assert re.search(r"3\s+│?\s*variations", history) and "0002-5.png" in history
    again = term.send("/open 1")
    assert "0001-5.png" in again and "loading" not in again
    assert "/variations N" in term.send("/help")

    term.child.sendline("/quit")
    assert term.finish() == 0
    assert "Traceback" not in term.raw


def test_ctrl_c_cancels_the_generation_not_the_session(tmp_path):
    out = tmp_path / "images"
    term = Terminal(out, "blocks")
    term.send("/steps 400")
    term.child.sendline("a slow lighthouse")
    term.child.expect(r"\d+/400")  # denoising has begun
    term.child.sendintr()
    term.child.expect("cancelled")
    term.child.expect(PROMPT)
    assert not list(out.glob("*.png"))  # nothing half-made is left

    term.send("/steps 2")
    shown = term.send("a quick lighthouse")
    files = list(out.glob("0001-*.png"))
    assert len(files) == 1, shown
    assert "▀" in term.raw  # shown as half-blocks

    term.child.sendeof()  # Ctrl-D leaves too
    assert term.finish() == 0


def test_bad_start_is_one_line(tmp_path):
    env = dict(os.environ, EDGEGEN_IMAGE_PROTOCOL="jpeg")
    r = subprocess.run([sys.executable, "-m", "edgegen", "run", "--out", str(tmp_path)],
                       input="", capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "EDGEGEN_IMAGE_PROTOCOL='jpeg'" in r.stderr
    (tmp_path / "file").write_text("x")
    r = subprocess.run([sys.executable, "-m", "edgegen", "run", "--out", str(tmp_path / "file")],
                       input="", capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "is a file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "edgegen", "run", "--model", str(tmp_path / "nope")],
                       input="", capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 3 and r.stderr.count("\n") == 1


def run_lines(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgegen", "run", "--out", str(tmp_path / "out")],
        input=text,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_line_mode_from_a_pipe(tmp_path):
    story = tmp_path / "story.md"
    story.write_text("A small boat sails across a calm bay at dawn.\n")
    script = "\n".join(
        [
            "# comments and blank lines are skipped",
            "/steps 2",
            "/seed 11",
            "",
            "a watercolor fox",
            "/style anime",
            "/negative blurry",
            "a watercolor fox",
            "/variations 2",
            "/speak Hello there. It is 5 past 9.",
            f"/render {story}",
        ]
    )
    r = run_lines(tmp_path, script + "\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6  # one per image, one for the speech, one for the video
    assert lines[0].split("\t")[:2] == [str(tmp_path / "out" / "0001-11.png"), "seed=11"]
    styled = parameters(tmp_path / "out" / "0002-11.png")
    assert styled.startswith("a watercolor fox, anime illustration")
    assert "Negative prompt: blurry, text, letters" in styled
    assert [Path(line.split("\t")[0]).name for line in lines[2:4]] == ["0003-12.png", "0003-13.png"]
    wav = tmp_path / "out" / "0004-speech.wav"
    assert lines[4].startswith(str(wav)) and wav.stat().st_size > 10_000
    srt = wav.with_suffix(".srt").read_text()
    assert "Hello" in srt and "-->" in srt
    video = tmp_path / "out" / "0005-story.mp4"
    assert lines[5].startswith(f"{video}\t") and "1080x1920 · 1 scenes" in lines[5]
    import av

    with av.open(str(video)) as container:
        assert container.streams.video[0].width == 1080 and container.streams.audio
    assert (tmp_path / "out" / "0005-story.srt").is_file()
    assert "Traceback" not in r.stderr


def test_line_mode_errors_name_the_line_and_set_the_status(tmp_path):
    r = run_lines(tmp_path, "/steps 2\n/size 65x64\n/frobnicate\na cat\n")
    assert r.returncode == 2  # the first failure's code (usage)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: line 2: width 65 is not a multiple of 64 from 64 to 4096",
        "error: line 3: unknown command '/frobnicate'; type /help for the commands",
    ]
    assert len(r.stdout.splitlines()) == 1  # the prompt after the errors still ran


# --- The session in process ----------------------------------------------------------------


class RecordingUI:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def message(self, text):
        self.events.append(("message", text))

    def error(self, text):
        self.events.append(("error", text))

    def warning(self, text):
        self.events.append(("warning", text))

    def settings(self, rows):
        self.events.append(("settings", dict(rows)))

    def status(self, text):
        import contextlib

        return contextlib.nullcontext()

    def progress(self):
        import contextlib

        return contextlib.nullcontext(lambda label, done, total: self.events.append(("step", done)))

    def result(self, result, images):
        self.events.append(("result", (result, images)))

    def table(self, title, columns, rows):
        self.events.append(("table", rows))

    def of(self, kind):
        return [v for k, v in self.events if k == kind]


def test_changing_model_frees_the_old_one(tmp_path, tiny_sd1):
    from edgegen.cli.session import Session

    ui = RecordingUI()
    session = Session(tmp_path, ui)
    session.handle("/steps 2")
    session.handle("a cat")
    session.handle("a dog")
    assert session.models.loads == {"pipeline": 1}
    session.handle(f"/model {tiny_sd1}")
    assert ui.of("settings")[-1]["model"] == session.models.pipeline(str(tiny_sd1)).name
    assert [k for k in session.models._cache] == [("pipeline", str(tiny_sd1))]  # old one freed
    session.handle("/size 64x64")
    session.handle("a bird")
    result, images = ui.of("result")[-1]
    assert images[0].size == (64, 64) and result.load_seconds == 0
    session.handle("/model default")
    assert session.models.loads == {"pipeline": 3}
    assert [k for k in session.models._cache] == [("pipeline", None)]
    assert not ui.of("error")
    session.close()


def test_a_model_that_fails_to_load_keeps_the_current_one(tmp_path):
    from edgegen.cli.session import Session

    ui = RecordingUI()
    session = Session(tmp_path, ui)
    session.handle("/model default")
    session.handle(f"/model {tmp_path / 'missing'}")
    assert len(ui.of("error")) == 1 and session.s.model is None
    assert session.models.loaded("pipeline", None)


def test_numbers_continue_after_an_earlier_session(tmp_path):
    from edgegen.cli.session import Session

    (tmp_path / "0041-7.png").write_bytes(b"")
    ui = RecordingUI()
    session = Session(tmp_path, ui)
    session.handle("/steps 1")
    session.handle("/seed 3")
    session.handle("a boat")
    assert (tmp_path / "0042-3.png").is_file()
    session.handle("/again")
    assert (tmp_path / "0043-3.png").is_file()
    assert np.array_equal(pixels(tmp_path / "0042-3.png"), pixels(tmp_path / "0043-3.png"))


def test_long_prompt_warning_is_one_message(tmp_path):
    from edgegen.cli.session import Session

    ui = RecordingUI()
    session = Session(tmp_path, ui)
    session.handle("/steps 1")
    session.handle(" ".join(["a very long prompt about a lighthouse"] * 30))
    assert len(ui.of("warning")) == 1 and "dropped:" in ui.of("warning")[0]
