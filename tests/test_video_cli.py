"""``edgegen render`` through the real click group, with the model and voice faked."""

import pytest
from click.testing import CliRunner
from video_support import FakeImages, FakeSpeaker

import edgegen.cli as cli_mod
from edgegen.cli import render as render_cli


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setitem(cli_mod.COMMANDS, "render", "edgegen.cli.render:render")

    def invoke(*args):
        return CliRunner().invoke(cli_mod.cli, ["render", *map(str, args)])

    return invoke


@pytest.fixture
def fakes(monkeypatch):
    images, voices = FakeImages(), []

    def speaker(name):
        voices.append(name)
        return FakeSpeaker()

    monkeypatch.setattr(render_cli, "load_images", lambda model: images)
    monkeypatch.setattr(render_cli, "load_speaker", speaker)
    return images, voices


def test_render_command_writes_video_and_summary(tmp_path, run, fakes):
    script = tmp_path / "s.toml"
    script.write_text(
        'voice = "joe"\n[[scenes]]\nnarration = "Hello sea."\n[[scenes]]\nnarration = "Bye."\n'
    )
    out = tmp_path / "v.mp4"
    result = run(
        script, "-o", out, "--fps", "5", "--size", "144x256", "--draft", "--style", "anime"
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".srt").is_file()
    assert "wrote" in result.output and "2 generated" in result.output
    assert fakes[1] == ["joe"]  # the storyboard's voice, since --voice was not given
    assert "anime" in fakes[0].calls[0][0]


def test_failed_scene_is_warned_about(tmp_path, run, fakes, monkeypatch):
    monkeypatch.setattr(render_cli, "load_images", lambda model: FakeImages(fail_on="Bye"))
    script = tmp_path / "s.md"
    script.write_text("Hello sea.\n\nBye.\n")
    result = run(script, "--fps", "5", "--size", "144x256")
    assert result.exit_code == 0, result.output
    assert "scene 2 (line 3) shows a placeholder card" in result.output


@pytest.mark.parametrize(
    "text, args, code, message",
    [
        ("\n", [], 5, "no narration found"),
        ("Hi.\n", ["--style", "oil"], 2, "'oil' is not one of"),
        ("Hi.\n", ["--music", "missing.mp3"], 2, "does not exist"),
        ("Hi.\n", ["--size", "1080x1921"], 5, "1080x1921 is invalid"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(tmp_path, run, fakes, text, args, code, message):
    script = tmp_path / "s.md"
    script.write_text(text)
    result = run(script, "-o", tmp_path / "v.mp4", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    if code == 5:
        assert result.output.strip().count("\n") == 0 and result.output.startswith("Error: ")
    assert not (tmp_path / "v.mp4").exists()


def test_model_option_reaches_the_loader_and_defaults_to_none(tmp_path, run, fakes, monkeypatch):
    seen = []
    monkeypatch.setattr(render_cli, "load_images", lambda model: seen.append(model) or fakes[0])
    monkeypatch.delenv("EDGEGEN_MODEL", raising=False)
    script = tmp_path / "s.md"
    script.write_text("Hi.\n")
    assert run(script, "--fps", "5", "--size", "144x256").exit_code == 0
    assert run(script, "--fps", "5", "--size", "144x256", "-m", "tiny").exit_code == 0
    assert seen == [None, "tiny"]  # None: the built-in default model
