"""The README's main command, run as written (its output redirected into a temporary folder):
it works offline on the built-in model and voice and prints no warning (issue 18: it printed
five prompt-truncation warnings the user could do nothing about)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main_command() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- main-command -->", 1)[1]
    line = next(ln for ln in block.splitlines() if ln.strip() and not ln.startswith("```"))
    return shlex.split(line)


def test_readme_main_command_prints_no_warning(tmp_path):
    cmd = main_command()
    assert cmd[:2] == [".venv/bin/edgegen", "render"]
    out = tmp_path / "quickstart.mp4"
    args = [str(ROOT / cmd[0]), *cmd[1:]]
    args[args.index("-o") + 1] = str(out)
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"warn", r.stderr + r.stdout, re.IGNORECASE), r.stderr
    assert out.stat().st_size > 100_000 and out.with_suffix(".srt").is_file()
    assert "wrote" in r.stderr  # the closing summary
