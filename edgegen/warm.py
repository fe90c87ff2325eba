"""Models kept loaded between uses: ``edgegen batch`` shares them across jobs and
``edgegen run`` across prompts.

    models = Models()
    sd = models.pipeline("sd15-q8")   # loads: weights, text encoder, UNet, VAE
    sd = models.pipeline("sd15-q8")   # the same object, no loading
    models.loads                      # {"pipeline": 1}

With ``one_each=True`` (the interactive session) a newly loaded model replaces the one of its
kind that was loaded before, so changing model frees the old one's memory.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any


class Models:
    """Pipelines, voices and upscalers by name, each loaded once and kept. ``loads`` counts
    the loads per kind (tests and reports)."""

    def __init__(self, one_each: bool = False) -> None:
        self.one_each = one_each
        self._cache: dict[tuple[str, str | None], Any] = {}
        self.loads: dict[str, int] = {}

    def _get(self, what: str, name: str | None, load: Callable[[], Any]) -> Any:
        key = (what, name)
        if key not in self._cache:
            model = load()  # the old one stays until the new one has loaded
            if self.one_each:
                for old in [k for k in self._cache if k[0] == what]:
                    self._close(what, self._cache.pop(old))
                gc.collect()
            self._cache[key] = model
            self.loads[what] = self.loads.get(what, 0) + 1
        return self._cache[key]

    def loaded(self, what: str, name: str | None) -> bool:
        return (what, name) in self._cache

    def pipeline(self, name: str | None, warm: bool = False) -> Any:
        """The image pipeline ``name`` (None: the built-in model). ``warm`` loads every
        component now rather than on first use."""
        from edgegen.pipelines import load_pipeline

        def load() -> Any:
            sd = load_pipeline(name)
            if warm:
                for component in ("tokenizer", "text_encoder", "unet", "vae"):
                    getattr(sd, component)
            return sd

        return self._get("pipeline", name, load)

    def voice(self, name: str | None) -> Any:
        from edgegen.speech import load_voice

        return self._get("voice", name, lambda: load_voice(name))

    def upscaler(self, name: str | None) -> Any:
        from edgegen.upscale import load_upscaler

        return self._get("upscaler", name, lambda: load_upscaler(name))

    @staticmethod
    def _close(what: str, model: Any) -> None:
        if what == "voice":
            model.close()

    def close(self) -> None:
        for (what, _), model in self._cache.items():
            self._close(what, model)
        self._cache.clear()
