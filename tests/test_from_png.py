"""``generate --from-png``: the parameters edgegen, A1111, Forge and Fooocus write, read back."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgegen.cli import cli
from edgegen.errors import InputFileError
from edgegen.pngparams import parse_parameters

# As A1111 1.10 writes it (its wiki's "PNG info" layout): a two-line prompt, a negative prompt,
# the sampler and its schedule type apart, quoted values holding commas, hires-fix fields.
A1111 = (
    "masterpiece, a lighthouse on a cliff,\n"
    "watercolor, (soft light:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, '
    'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.4, '
    'Clip skip: 2, Hires upscale: 2, Hires upscaler: Latent, '
    'Lora hashes: "add_detail: 7c6bad76eb54, film: 0a1b2c3d4e5f", Version: v1.10.1'
)  # fmt: skip


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a1111_text_is_read_field_by_field():
    p = parse_parameters(A1111)
    assert p.prompt == "masterpiece, a lighthouse on a cliff,\nwatercolor, (soft light:1.2)"
    assert p.negative == "blurry, lowres"
    assert (p.steps, p.sampler, p.guidance, p.seed) == (28, "dpmpp_2m_karras", 6.5, 3141592653)
    assert (p.width, p.height, p.clip_skip, p.model) == (512, 768, 1, "v1-5-pruned-emaonly")
    assert p.ignored == ("Denoising strength", "Hires upscale", "Hires upscaler", "Lora hashes")


def test_older_a1111_labels_and_a_prompt_alone():
    p = parse_parameters("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
    assert (p.prompt, p.negative, p.sampler, p.ignored) == ("a cat", "", "euler_a", ())
    assert parse_parameters("just a prompt").prompt == "just a prompt"


def test_fooocus_json_scheme():
    text = json.dumps(
        {"prompt": "a fox", "negative_prompt": "", "steps": 30, "sampler": "dpmpp_2m",
         "scheduler": "karras", "guidance_scale": 4, "seed": "12", "resolution": "(896, 1152)",
         "base_model": "juggernautXL", "styles": "['Fooocus V2']", "metadata_scheme": "fooocus"}
    )  # fmt: skip
    p = parse_parameters(text)
    assert (p.prompt, p.steps, p.sampler, p.guidance, p.seed) == (
        "a fox",
        30,
        "dpmpp_2m_karras",
        4,
        12,
    )
    assert (p.width, p.height, p.model, p.ignored) == (896, 1152, "juggernautXL", ("styles",))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x\nSteps: 20, Sampler: UniPC, Seed: 1", "sampler 'UniPC' is not one edgegen has"),
        ("x\nSteps: twenty, Sampler: Euler", "steps 'twenty' is not a number"),
        ("x\nSteps: 20, Size: big", "size 'big' is not WIDTHxHEIGHT"),
        ('{"negative_prompt": "x"}', "without a 'prompt'"),
    ],
)
def test_bad_parameters_name_the_value(text, fragment):
    with pytest.raises(InputFileError, match=fragment):
        parse_parameters(text)


def test_an_edgegen_png_regenerates_bit_for_bit(tmp_path):
    first = tmp_path / "first.png"
    prompt = "a red sun in the top left over a calm sea at sunset"
    args = ["--negative", "dark", "--seed", "11", "--steps", "3", "--guidance", "5", "-o", first]
    result = _invoke("generate", prompt, "--scheduler", "euler_a", "--clip-skip", "1", *args)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.png"
    result = _invoke("generate", "--from-png", first, "-o", again)
    assert result.exit_code == 0, result.output
    a, b = Image.open(first), Image.open(again)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.text["parameters"] == b.text["parameters"]
    # Options given on the command line win over the PNG's.
    other = tmp_path / "other.png"
    result = _invoke("generate", "--from-png", first, "--seed", "12", "--steps", "2", "-o", other)
    assert result.exit_code == 0, result.output
    text = Image.open(other).text["parameters"]
    assert "Seed: 12," in text and "Steps: 2," in text and "Sampler: euler_a" in text
    assert text.startswith(prompt + "\nNegative prompt: dark\n")


def test_an_a1111_png_regenerates_with_a_note_on_what_is_not_applied(tmp_path):
    png = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(
        png, pnginfo=_info(A1111.replace("Size: 512x768", "Size: 128x256"))
    )
    out = tmp_path / "out.png"
    # The PNG names a model this machine does not have: said, with what to do.
    result = _invoke("generate", "--from-png", png, "--steps", "1", "-o", out)
    assert result.exit_code == 3 and "'v1-5-pruned-emaonly': pass --model" in result.output
    assert not out.exists()
    result = _invoke("generate", "--from-png", png, "--model", "default", "--steps", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert "not applied from the PNG: Denoising strength, Hires upscale, Hires upscaler, Lora" in (
        result.output
    )
    text = Image.open(out).text["parameters"]
    assert "Sampler: dpmpp_2m_karras" in text and "Seed: 3141592653," in text
    assert "Size: 128x256" in text and "Clip skip: 2" in text and "CFG scale: 6.5" in text


def _info(text):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    return info


def test_bad_pngs_are_one_line_errors(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    unknown = tmp_path / "unknown.png"
    Image.new("RGB", (8, 8)).save(unknown, pnginfo=_info("x\nSteps: 20, Sampler: Heun, Seed: 1"))
    for path, fragment in [
        (plain, "has no 'parameters' text chunk"),
        (unknown, "sampler 'Heun' is not one edgegen has"),
        (tmp_path / "missing.png", "does not exist"),
    ]:
        result = _invoke("generate", "--from-png", path, "-o", tmp_path / "out.png")
        assert result.exit_code == 5, result.output
        assert fragment in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()
    result = _invoke("generate", "-o", tmp_path / "out.png")
    assert result.exit_code == 2 and "no prompt" in result.output
