"""From a scene to an image prompt: subject + character sheet + style + lighting + framing + quality.

The subject comes first because CLIP text encoders keep only 77 tokens: whatever is cut off
should be the generic quality terms, never what the scene is about. Every style's negative
prompt excludes text, letters and watermarks — diffusion models love to scribble captions
into images, and our captions are drawn by us.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from edgegen.errors import UsageError


@dataclass(frozen=True)
class StylePreset:
    terms: str  # the look
    lighting: str
    negative: str  # style-specific exclusions, added to NEGATIVE_ALWAYS


# Never wanted in any style: burnt-in text fights our captions.
NEGATIVE_ALWAYS = "text, letters, words, caption, subtitles, watermark, signature, logo"
QUALITY = "highly detailed, sharp focus, well composed"
FRAMING = "vertical composition"

STYLES: dict[str, StylePreset] = {
    "cinematic": StylePreset(
        "cinematic film still, shallow depth of field, anamorphic, color graded",
        "dramatic golden hour lighting",
        "cartoon, drawing, lowres, blurry, oversaturated",
    ),
    "photoreal": StylePreset(
        "photograph, 35mm, realistic, natural colors",
        "soft natural light",
        "painting, illustration, cartoon, 3d render, lowres, blurry",
    ),
    "anime": StylePreset(
        "anime illustration, clean line art, cel shading, vibrant",
        "bright soft lighting",
        "photo, realistic, 3d render, lowres, blurry, deformed",
    ),
    "watercolor": StylePreset(
        "watercolor painting, soft washes, paper texture, loose brush strokes",
        "gentle diffuse light",
        "photo, 3d render, harsh lines, lowres",
    ),
    "3d-render": StylePreset(
        "3d render, octane, smooth materials, stylized",
        "studio lighting, soft shadows",
        "photo, painting, sketch, lowres, noisy",
    ),
    "comic": StylePreset(
        "comic book art, bold ink outlines, halftone shading, flat colors",
        "high contrast lighting",
        "photo, realistic, blurry, lowres, speech bubble",
    ),
    "flat": StylePreset(
        "flat vector illustration, simple shapes, minimal, clean",
        "even lighting",
        "photo, realistic, noisy, cluttered, lowres",
    ),
}


def style(name: str) -> StylePreset:
    try:
        return STYLES[name]
    except KeyError:
        raise UsageError(f"style {name!r} is unknown; choose one of {', '.join(STYLES)}") from None


def subject(narration: str, visual: str | None, max_words: int = 40) -> str:
    """What the image shows: the visual hint if given, else the narration (trimmed)."""
    text = visual if visual else narration
    words = text.split()
    return " ".join(words[:max_words]).rstrip(" .,;:")


def build_prompt(scene_subject: str, style_name: str, character: str | None = None) -> str:
    preset = style(style_name)
    parts = [scene_subject, character, preset.terms, preset.lighting, FRAMING, QUALITY]
    return ", ".join(p.strip() for p in parts if p and p.strip())


def only_style_dropped(
    prompt: str, dropped: str, scene_subject: str, character: str | None
) -> bool:
    """True when the text a tokenizer ``dropped`` from the end of ``prompt`` lies wholly in the
    style terms edgegen appended (a short-context model, like the built-in one, cannot take
    them all): the scene's own words all reached the model, so there is nothing to tell."""
    own = ", ".join(p.strip() for p in (scene_subject, character) if p and p.strip())
    if not prompt.startswith(own):
        return False
    return _letters(prompt[len(own) :]).endswith(_letters(dropped))


def _letters(text: str) -> str:
    # Tokenizers decode dropped text with their own spacing (" , "): compare letters only.
    return re.sub(r"[^0-9a-z]", "", text.lower())


def negative_prompt(style_name: str) -> str:
    return f"{NEGATIVE_ALWAYS}, {style(style_name).negative}"


def scene_seed(video_seed: int, scene_subject: str, occurrence: int = 0) -> int:
    """A 32-bit seed from the video seed and what the scene shows.

    Keyed on the subject rather than the scene's position, so inserting or deleting a scene
    leaves every other scene's seed (and cached image) unchanged. ``occurrence`` separates
    scenes that share a subject so they do not get identical images.
    """
    key = f"{video_seed}\x00{scene_subject}\x00{occurrence}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
