"""Shared click parameter types and option bundles."""

from __future__ import annotations

import click


class SizeType(click.ParamType):
    """``WIDTHxHEIGHT``, e.g. ``576x1024``."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).lower().replace("×", "x")
        try:
            w, h = (int(v) for v in text.split("x"))
        except ValueError:
            self.fail(f"{value!r} is not a size like 576x1024", param, ctx)
        if w <= 0 or h <= 0:
            self.fail(f"{value!r} must have positive width and height", param, ctx)
        return w, h


SIZE = SizeType()


def examples(*lines: str) -> str:
    """A command's help epilog: the example invocations, kept as written (click's ``\\b``)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
