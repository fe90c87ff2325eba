"""The default model: its data generator, tokenizer, training script and the shipped weights."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from adherence import CASES, CHROMATIC, agrees, colour_mask  # training/, on pytest's path
from scenes import (
    OBJECTS,
    POSITION_PHRASES,
    POSITIONS,
    Scene,
    caption,
    caption_words,
    render,
    scene_for,
)

from edgegen.defaultmodel import DEFAULT_MODEL_NAME, path
from edgegen.pipelines import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
SIZE = (128, 256)


def _training_module():
    spec = importlib.util.spec_from_file_location(
        "train_default_model", ROOT / "training" / "train_default_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Data generator
def test_scenes_and_renderings_are_deterministic():
    a = [scene_for(i, seed=3) for i in range(20)]
    assert a == [scene_for(i, seed=3) for i in range(20)]
    assert a != [scene_for(i, seed=4) for i in range(20)]
    img1 = np.asarray(render(a[0], SIZE))
    assert np.array_equal(img1, np.asarray(render(a[0], SIZE)))
    assert img1.shape == (256, 128, 3)
    assert not np.array_equal(img1, np.asarray(render(a[1], SIZE)))
    c = caption(a[0], random.Random(5))
    assert c == caption(a[0], random.Random(5))


def test_dataset_covers_the_grammar():
    scenes = [scene_for(i) for i in range(600)]
    assert {s.obj for s in scenes} == set(OBJECTS)
    assert {s.cell for s in scenes} == set(POSITIONS)
    assert {s.time for s in scenes} == {"dawn", "day", "sunset", "night"}
    assert len({s.land for s in scenes}) == 7


def test_captions_name_what_is_drawn():
    rng = random.Random(0)
    agree = named = 0
    for i in range(160):
        s = scene_for(i, seed=11)
        text = caption(s, rng, drop=0.0)
        assert text.startswith(("a ", "an ")) and s.obj in text and s.colour in text
        assert any(p in text for p in POSITION_PHRASES[s.position])
        if s.colour in CHROMATIC and s.position not in ("top", "bottom"):
            named += 1
            agree += agrees(np.asarray(render(s, SIZE)), s.colour, s.position)
    # A background may share the object's hue (a blue boat on the sea); the rest must agree.
    assert agree / named >= 0.85, (agree, named)


def test_adherence_check_rejects_the_wrong_place_and_colour():
    case = CASES[0]  # a red sun in the top left, snowy field at night
    scene = Scene(time="night", land="snow", obj="sun", colour="red", cell=(0, 0), seed=1)
    img = np.asarray(render(scene, SIZE))
    assert agrees(img, "red", "top left")
    assert not agrees(img, "red", "bottom right")
    assert not agrees(img, "green", "top left")
    assert colour_mask(img, "red")[:128, :64].mean() > 0.05
    assert case.prompt == "a red sun in the top left over a snowy field at night"
    assert len(CASES) == 30 and len({c.prompt for c in CASES}) == 30


def test_flipping_a_scene_swaps_left_and_right():
    train = _training_module()
    s = Scene(time="day", land="sea", obj="boat", colour="red", cell=(0, 2))
    assert train.flipped(s).position == "bottom right"
    assert train.flipped(train.flipped(s)) == s


# Tokenizer
def test_reduced_vocabulary_tokenizes_captions_like_full_clip(tmp_path):
    from edgegen.converters.clip_vocab import write_tokenizer_files
    from edgegen.converters.tokenizer import CLIPTokenizer
    from edgegen.defaultmodel.vocab import write_reduced_tokenizer

    write_tokenizer_files(tmp_path / "full")
    size = write_reduced_tokenizer(tmp_path / "small", caption_words())
    assert 600 < size < 1000
    full = CLIPTokenizer.from_dir(tmp_path / "full")
    small = CLIPTokenizer.from_dir(tmp_path / "small")
    rng = random.Random(1)
    captions = [caption(scene_for(i), rng) for i in range(100)] + ["a zebra on Mars"]
    for text in captions[:-1]:
        a, b = full.encode([text]).ids[0], small.encode([text]).ids[0]
        pieces_a = [full.decode([int(t)]) for t in a if t != full.eos_id]
        pieces_b = [small.decode([int(t)]) for t in b if t != small.eos_id]
        assert pieces_a == pieces_b, text
    # Words outside the grammar still tokenize (into smaller pieces), never fail.
    ids = small.encode(captions[-1:]).ids[0]
    assert ids[0] == small.bos_id and (ids < size).all()


# Training script
def test_tiny_training_run_gives_a_loadable_model(tmp_path):
    train = _training_module()
    cfg = train.tiny_config()
    summary = train.train(cfg, tmp_path / "model", tmp_path / "work")
    rows = list(csv.DictReader((tmp_path / "work" / "loss.csv").open()))
    assert len(rows) == cfg.unet_steps
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert summary["steps"] == cfg.unet_steps and math.isfinite(summary["final_loss_ema100"])
    vae_rows = list(csv.DictReader((tmp_path / "work" / "vae_loss.csv").open()))
    assert len(vae_rows) == cfg.vae_steps and all(math.isfinite(float(r["loss"])) for r in vae_rows)

    from edgegen.params import GenerationParams

    sd = load_pipeline(tmp_path / "model")
    p = GenerationParams(prompt="a red sun in the top left", steps=2, seed=5)
    a, b = sd.generate(p), sd.generate(p)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    c = sd.generate(GenerationParams(prompt="a red sun in the top left", steps=2, seed=6))
    assert not np.array_equal(a, c)


# The shipped model
def _shipped() -> Path:
    try:
        return path()
    except FileNotFoundError:
        pytest.skip("the default model's weights are not in this checkout yet")


def test_shipped_model_is_small_standard_sd():
    folder = _shipped()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 25 * 2**20, size
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert json.loads((folder / "unet" / "config.json").read_text())["_class_name"] == (
        "UNet2DConditionModel"
    )
    assert (folder / "tokenizer" / "vocab.json").is_file()
    assert (folder / "tokenizer" / "merges.txt").is_file()
    assert DEFAULT_MODEL_NAME


def test_shipped_model_same_seed_same_image_and_seeds_differ():
    from edgegen.params import GenerationParams

    sd = load_pipeline(_shipped())
    assert sd.default_size == SIZE
    p = GenerationParams(prompt="a red sun in the top left over the sea at sunset", steps=8)
    a, b = sd.generate(p), sd.generate(p)
    c = sd.generate(GenerationParams(prompt=p.prompt, steps=8, seed=1))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 2


# Issue 5's acceptance: ≥ 80 % of the 30 prompts × 2 seeds agree with their prompt's colour
# and place (measured on the shipped model: 51/60 = 85 %, see docs/default-model/README.md),
# and clearly more than the same images judged against another prompt's colour and place (a
# model that ignored prompts would score the same on both).
REQUIRED = 0.8


@pytest.mark.slow
def test_shipped_model_follows_colour_and_position():
    from adherence import evaluate

    results = evaluate(load_pipeline(_shipped()))
    assert len(results) == 60
    rate = sum(ok for _, _, ok, _ in results) / len(results)
    # Each image against the colour and place of the case 7 further on (a derangement).
    shifted = [
        agrees(image, results[(i + 14) % 60][0].colour, results[(i + 14) % 60][0].position)
        for i, (_, _, _, image) in enumerate(results)
    ]
    baseline = sum(shifted) / len(shifted)
    failed = [f"{c.prompt} (seed {s})" for c, s, ok, _ in results if not ok]
    assert rate >= REQUIRED, f"agreement {rate:.0%}; failed: {failed}"
    assert rate > baseline, f"agreement {rate:.0%} vs {baseline:.0%} with other prompts"
