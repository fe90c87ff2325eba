"""CLIP tokenizer: ids equal to transformers' CLIPTokenizer on the real CLIP vocabulary.

The vocabulary is rebuilt from the merge list edgegen ships by ``edgegen.converters.clip_vocab``
and checked against the full list in open_clip_torch (a test-only dependency); the tokenizer folders below copy the config
files of real SD repos (SD 1.5's legacy format, SD 2's "!" padding, transformers 5's
tokenizer.json-only save).
"""

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import CLIPTokenizer as HFTokenizer

from edgegen.converters.clip_vocab import BPE_PATH, derive_vocab, write_tokenizer_files
from edgegen.converters.tokenizer import CLIPTokenizer
from edgegen.errors import ModelError, UnsupportedModelError

PROMPTS = [
    "a photo of a cat",
    "",
    "An astronaut riding a horse on Mars, 8k, highly detailed, trending on artstation",
    "Hello, World!!  It's 2024... don't   stop\tnow\n",
    "numbers 12345 3.14 1e-5 $100 50% #1 @home",
    "café naïve Ünïcödé résumé Ångström",
    "emoji 🐱🚀👩‍🚀 and 中文字符 and العربية and русский",
    "ﬁ ligature Ａｂｃ full-width, e\u0301 combining",
    "x's y'll z'VE can't I'M",
    "wow!! <|endoftext|> mid <|ENDOFTEXT|> x<|startoftext|>y",
    "hey!!! a!b",
    "  leading and trailing  \r\n",
    " ".join(["a very long prompt word"] * 25),  # > 77 tokens
    "A" * 400,  # one huge word: BPE pieces well past 77
]


def legacy_token(content):
    # How transformers 4 serialized special tokens in SD 1.x / 2.x repos.
    return {
        "content": content,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    write_tokenizer_files(root / "derived")
    out = {"derived": root / "derived"}
    for name, pad in (("sd15", "<|endoftext|>"), ("sd2", "!")):
        d = root / name
        d.mkdir()
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(root / "derived" / f, d / f)
        config = {
            "add_prefix_space": False,
            "bos_token": {"__type": "AddedToken", **legacy_token("<|startoftext|>")},
            "do_lower_case": True,
            "eos_token": {"__type": "AddedToken", **legacy_token("<|endoftext|>")},
            "errors": "replace",
            "model_max_length": 77,
            "pad_token": "<|endoftext|>",  # SD 2's config says this too; its map overrides it
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": {"__type": "AddedToken", **legacy_token("<|endoftext|>")},
        }
        specials = {
            "bos_token": legacy_token("<|startoftext|>"),
            "eos_token": legacy_token("<|endoftext|>"),
            "pad_token": pad,
            "unk_token": legacy_token("<|endoftext|>"),
        }
        (d / "tokenizer_config.json").write_text(json.dumps(config))
        (d / "special_tokens_map.json").write_text(json.dumps(specials))
        out[name] = d
    # transformers >= 4.34 configs list their tokens in added_tokens_decoder (special map unused).
    d = root / "added_tokens_decoder"
    shutil.copytree(out["sd15"], d)
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["pad_token"] = "!"
    config["added_tokens_decoder"] = {
        "0": {**legacy_token("!"), "normalized": False, "special": True},
        "49406": {**legacy_token("<|startoftext|>"), "special": True},
        "49407": {**legacy_token("<|endoftext|>"), "special": True},
    }
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    out["added_tokens_decoder"] = d
    # transformers 5 writes tokenizer.json + tokenizer_config.json only.
    HFTokenizer.from_pretrained(out["sd2"]).save_pretrained(root / "saved_by_transformers5")
    out["saved_by_transformers5"] = root / "saved_by_transformers5"
    return out


def _open_clip_file(name: str) -> Path:
    """A file of the open_clip package, found without importing it (that imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None, "open_clip_torch is a test dependency (scripts/setup.sh --dev)"
    return Path(next(iter(spec.submodule_search_locations))) / name


def test_derived_vocab_has_clip_ids():
    vocab, merges = derive_vocab(BPE_PATH)
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["!"] == 0 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["a</w>"] == 320 and vocab["cat</w>"] == 2368


def test_shipped_merge_list_is_openais(tmp_path):
    # The full published list (in open_clip_torch) gives the very same vocabulary.
    assert derive_vocab(_open_clip_file("bpe_simple_vocab_16e6.txt.gz")) == derive_vocab(BPE_PATH)
    lines = gzip.decompress(BPE_PATH.read_bytes()).decode().splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 48894


def test_known_ids_of_a_photo_of_a_cat(folders):
    # The ids every CLIP user has seen (transformers' CLIP docs, OpenAI's tokenizer).
    ids = CLIPTokenizer.from_dir(folders["sd15"]).encode(["a photo of a cat"]).ids
    assert ids[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 49407]


@pytest.mark.parametrize(
    "name", ["derived", "sd15", "sd2", "added_tokens_decoder", "saved_by_transformers5"]
)
def test_ids_match_transformers(folders, name):
    if name == "saved_by_transformers5":
        assert not (folders[name] / "vocab.json").exists()
    ours = CLIPTokenizer.from_dir(folders[name]).encode(PROMPTS)
    ref = HFTokenizer.from_pretrained(folders[name])(
        PROMPTS, padding="max_length", max_length=77, truncation=True
    ).input_ids
    assert ours.ids.dtype == np.int32 and ours.ids.shape == (len(PROMPTS), 77)
    for prompt, got, want in zip(PROMPTS, ours.ids.tolist(), ref, strict=True):
        assert got == want, prompt


@pytest.mark.parametrize(
    "name, pad",
    [("sd15", 49407), ("sd2", 0), ("added_tokens_decoder", 0), ("saved_by_transformers5", 0)],
)
def test_pad_token_is_read_from_the_folder(folders, name, pad):
    tok = CLIPTokenizer.from_dir(folders[name])
    assert tok.pad_id == pad
    assert tok.encode(["a cat"]).ids[0, 3:].tolist() == [49407] + [pad] * 73


def test_truncated_text_is_what_diffusers_warns_about(folders):
    ours = CLIPTokenizer.from_dir(folders["sd15"]).encode(PROMPTS)
    hf = HFTokenizer.from_pretrained(folders["sd15"])
    for prompt, dropped in zip(PROMPTS, ours.truncated, strict=True):
        full = hf(prompt).input_ids
        # StableDiffusionPipeline.encode_prompt: decode(untruncated_ids[:, 76:-1]).
        want = hf.decode(full[76:-1]) if len(full) > 77 else None
        assert dropped == want, prompt
    assert ours.truncated[0] is None and ours.truncated[-2] == " ".join(
        ["a very long prompt word"] * 10
    )


def test_matches_openai_reference_tokenizer_on_plain_text(folders):
    # An independent implementation: the original OpenAI SimpleTokenizer shipped by open_clip
    # (loaded from its file; it needs ftfy, and differs from transformers on odd unicode).
    pytest.importorskip("ftfy")
    spec = importlib.util.spec_from_file_location(
        "_openai_clip_tokenizer", _open_clip_file("tokenizer.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.SimpleTokenizer()
    plain = [p for p in PROMPTS[:5] if p] + ["x's y'll can't"]
    ours = CLIPTokenizer.from_dir(folders["sd15"]).encode(plain)
    for prompt, row in zip(plain, ours.ids, strict=True):
        want = [t for t in reference(prompt)[0].tolist() if t]  # it pads with 0
        assert row[: len(want)].tolist() == want, prompt


def test_model_max_length_comes_from_config(folders, tmp_path):
    shutil.copytree(folders["sd15"], tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    (tmp_path / "tok" / "tokenizer_config.json").write_text(
        json.dumps({**config, "model_max_length": 8})
    )
    out = CLIPTokenizer.from_dir(tmp_path / "tok").encode(["one two three four five six seven"])
    assert out.ids.shape == (1, 8)
    assert out.ids[0, 0] == 49406 and out.ids[0, 7] == 49407
    assert out.truncated == ["seven"]


def test_folder_without_tokenizer_files_is_refused(tmp_path):
    with pytest.raises(ModelError, match="vocab.json and merges.txt"):
        CLIPTokenizer.from_dir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        CLIPTokenizer.from_dir(tmp_path / "missing")


def test_non_bpe_tokenizer_json_is_unsupported(tmp_path):
    (tmp_path / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "WordPiece", "vocab": {}}})
    )
    with pytest.raises(UnsupportedModelError, match="WordPiece"):
        CLIPTokenizer.from_dir(tmp_path)


def test_pad_token_missing_from_vocab_is_named(folders, tmp_path):
    shutil.copytree(folders["sd15"], tmp_path / "tok")
    specials = json.loads((tmp_path / "tok" / "special_tokens_map.json").read_text())
    (tmp_path / "tok" / "special_tokens_map.json").write_text(
        json.dumps({**specials, "pad_token": "<pad>"})
    )
    with pytest.raises(ModelError, match="pad_token '<pad>'"):
        CLIPTokenizer.from_dir(tmp_path / "tok")


def test_textual_inversion_tokens_are_unsupported(folders, tmp_path):
    shutil.copytree(folders["added_tokens_decoder"], tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"]["49408"] = {"content": "<cat-toy>", "special": False}
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'<cat-toy>' \\(id 49408\\)"):
        CLIPTokenizer.from_dir(tmp_path / "tok")


@pytest.mark.parametrize("value", [1e30, int(1e30), "77"])
def test_unset_model_max_length_means_clips_77(folders, tmp_path, value):
    d = tmp_path / "tok"
    shutil.copytree(folders["sd15"], d)
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["model_max_length"] = value
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    tok = CLIPTokenizer.from_dir(d)
    assert tok.model_max_length == 77
    assert tok.encode(["a cat"]).ids.shape == (1, 77)
