"""Weight mapping for diffusers' AutoencoderKL → ``edgegen.models.vae.AutoencoderKL``.

The MLX modules carry diffusers' names, so most keys map to themselves; 4-D conv kernels go
from OIHW to OHWI. The mid-block attention comes under two spellings: current diffusers saves
``to_q/to_k/to_v/to_out.0``; checkpoints written before diffusers 0.14 (and many community
VAEs) say ``query/key/value/proj_attn``. Both land on the same parameters. Some conversions
store those projections as 1×1 convs, which the ``linear`` transform flattens.
"""

from __future__ import annotations

from edgegen.converters.mapping import Rule

_ATTN = r"((?:en|de)coder\.mid_block\.attentions\.\d+)"

RULES: list[Rule] = [
    Rule(_ATTN + r"\.(?:query|to_q)\.(weight|bias)", r"\1.to_q.\2", "linear"),
    Rule(_ATTN + r"\.(?:key|to_k)\.(weight|bias)", r"\1.to_k.\2", "linear"),
    Rule(_ATTN + r"\.(?:value|to_v)\.(weight|bias)", r"\1.to_v.\2", "linear"),
    Rule(_ATTN + r"\.(?:proj_attn|to_out\.0)\.(weight|bias)", r"\1.to_out.0.\2", "linear"),
    # Convolutions and norms; map_weights still checks each target exists with this shape.
    Rule(r"((?:en|de)coder\..+|quant_conv|post_quant_conv)\.(weight|bias)", r"\1.\2", "conv2d"),
]
