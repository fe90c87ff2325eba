"""Storyboard parsing and validation, and the prompt layer."""

from pathlib import Path

import pytest

from edgegen.errors import InputFileError, UsageError
from edgegen.video import prompts, storyboard

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_markdown_paragraphs_become_scenes_with_hints(tmp_path):
    p = write(
        tmp_path,
        "s.md",
        "# Morning\n\nThe sun **rises** over the sea.\n[visual: sunrise, boats] [camera: pan-up]\n"
        "\n<!-- a note -->\n[visual: snowy peaks]\n\nMountains stand\ntall and quiet.\n\n"
        "## Part two\n- The [city](http://x) sleeps.\n",
    )
    board = storyboard.load(p)
    assert board.title == "Morning"
    assert [s.narration for s in board.scenes] == [
        "The sun rises over the sea.",
        "Mountains stand tall and quiet.",
        "The city sleeps.",
    ]
    first, second, third = board.scenes
    assert (first.visual, first.camera, first.line) == ("sunrise, boats", "pan-up", 3)
    # a hint-only paragraph applies to the next paragraph
    assert (second.visual, second.line) == ("snowy peaks", 9)
    assert third.visual is None and third.camera is None


def test_toml_storyboard_fields(tmp_path):
    (tmp_path / "bed.wav").write_bytes(b"RIFF")
    p = write(
        tmp_path,
        "b.toml",
        'title = "T"\nstyle = "anime"\nseed = 7\nsize = "720x1280"\nfps = 24\nmusic = "bed.wav"\n'
        'character = "a red fox"\ncrossfade = 0.2\n\n[[scenes]]\nnarration = "One."\n'
        'camera = "zoom-out"\nduration = 4\n\n[[scenes]]\nnarration = "Two."\nvisual = "a moon"\n',
    )
    b = storyboard.load(p)
    assert (b.title, b.style, b.seed, b.width, b.height, b.fps) == ("T", "anime", 7, 720, 1280, 24)
    assert b.music == tmp_path / "bed.wav" and b.character == "a red fox" and b.crossfade == 0.2
    assert b.scenes[0].camera == "zoom-out" and b.scenes[0].duration == 4.0
    assert b.scenes[1].visual == "a moon" and b.scenes[1].line == 15


def test_examples_load():
    assert len(storyboard.load(EXAMPLES / "quickstart.md").scenes) >= 3
    board = storyboard.load(EXAMPLES / "storyboard.toml")
    assert len(board.scenes) >= 3


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("empty.md", "\n\n# Only a title\n\n", "empty.md: no narration found"),
        ("empty.txt", "[visual: a sky]\n", "empty.txt: no narration found"),
        ("hint.md", "Hello.\n[visuals: sky]\n", "hint.md:2: unknown hint [visuals: …]"),
        ("cam.md", "Hello.\n\nBye. [camera: spin]\n", "cam.md:3: camera: 'spin' is not a camera"),
        (
            "style.toml",
            'seed = 1\nstyle = "oil"\n[[scenes]]\nnarration = "x"\n',
            "style.toml:2: style: 'oil' is unknown",
        ),
        (
            "size.toml",
            'size = "1080x1921"\n[[scenes]]\nnarration = "x"\n',
            "size.toml:1: size: 1080x1921 is invalid",
        ),
        (
            "size2.toml",
            'fps = 30\nsize = "big"\n[[scenes]]\nnarration = "x"\n',
            "size2.toml:2: size: 'big' is not WIDTHxHEIGHT",
        ),
        (
            "music.toml",
            '\nmusic = "nope.mp3"\n[[scenes]]\nnarration = "x"\n',
            "music.toml:2: music: file",
        ),
        (
            "field.toml",
            'colour = 1\n[[scenes]]\nnarration = "x"\n',
            "field.toml:1: colour: unknown field",
        ),
        (
            "type.toml",
            'fps = "30"\n[[scenes]]\nnarration = "x"\n',
            "type.toml:1: fps: expected int",
        ),
        ("noscenes.toml", 'title = "x"\n', "noscenes.toml: scenes: no scenes"),
        (
            "blank.toml",
            '[[scenes]]\nnarration = "x"\n[[scenes]]\nvisual = "y"\n',
            "blank.toml:3: scenes[1].narration: is empty",
        ),
        (
            "camera.toml",
            '[[scenes]]\nnarration = "x"\ncamera = "dolly"\n',
            "camera.toml:3: scenes[0].camera: 'dolly'",
        ),
        ("syntax.toml", 'title = "x"\nfps = = 3\n', "syntax.toml:2: invalid TOML"),
        ("script.docx", "x", "unknown script type '.docx'"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, name, text, expected):
    p = write(tmp_path, name, text)
    with pytest.raises(InputFileError) as e:
        storyboard.load(p)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path))
    assert expected in message


def test_missing_file():
    with pytest.raises(InputFileError, match="nope.md: file not found"):
        storyboard.load(Path("nope.md"))


def test_every_style_excludes_text_and_watermarks():
    for name in prompts.STYLES:
        neg = prompts.negative_prompt(name)
        assert {"text", "letters", "watermark"} <= {t.strip() for t in neg.split(",")}
    with pytest.raises(UsageError, match="choose one of cinematic"):
        prompts.negative_prompt("oil")


def test_prompt_puts_subject_first_and_includes_the_sheet():
    p = prompts.build_prompt(
        prompts.subject("A fox runs.", None), "watercolor", "a red fox, blue scarf"
    )
    assert p.startswith("A fox runs, a red fox, blue scarf, watercolor painting")
    assert prompts.subject("narration", "a visual hint") == "a visual hint"


def test_scene_seeds_are_deterministic_and_local():
    a = prompts.scene_seed(1, "a sea")
    assert a == prompts.scene_seed(1, "a sea")
    assert a != prompts.scene_seed(2, "a sea")
    assert a != prompts.scene_seed(1, "a sea", occurrence=1)
    assert 0 <= a < 2**32
