"""edgegen's built-in default model: a small Stable Diffusion trained here on drawn scenes.

The weights live in ``weights/`` in diffusers layout (fp16 safetensors, CLIP-format tokenizer)
and ship inside the package, so every command works offline on a fresh machine. They were made
by ``training/train_default_model.py`` from the captioned scenes of ``training/scenes.py``; the model
draws skies, landscapes and one coloured object at a named place — nothing else.
"""

from __future__ import annotations

from pathlib import Path

from edgegen.errors import ModelNotFoundError

DEFAULT_MODEL_NAME = "edgegen-default"
# The names that mean "the built-in model" wherever a --model is accepted.
ALIASES = ("default", DEFAULT_MODEL_NAME)
# Where the weights ship; :func:`path` also checks that they are there.
FOLDER = Path(__file__).resolve().parent / "weights"


def path() -> Path:
    """The diffusers folder of the default model (inside the installed package)."""
    folder = FOLDER
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"the default model is missing from {str(folder)!r}",
            option="model",
            advice="reinstall edgegen or pass {} with a diffusers folder",
        )
    return folder
