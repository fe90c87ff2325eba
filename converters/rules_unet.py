"""Weight mapping for diffusers' UNet2DConditionModel → ``edgegen.models.unet``.

The MLX modules carry diffusers' names, so every key maps to itself. Layouts differ in two
places: conv kernels go from OIHW to OHWI, and the transformers' ``proj_in``/``proj_out`` are
Linear in edgegen while SD1 checkpoints store them as 1×1 convs (the ``linear`` transform drops
the unit axes; SD2/XL already store them as Linear). ``map_weights`` still checks that each
target exists with the right shape, so the broad last rule hides nothing.
"""

from __future__ import annotations

from edgegen.converters.mapping import Rule

_TRANSFORMER = r"((?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.\d+)"

RULES: list[Rule] = [
    Rule(_TRANSFORMER + r"\.(proj_in|proj_out)\.weight", r"\1.\2.weight", "linear"),
    # Everything else: conv kernels change layout (the transform leaves non-4-D arrays alone),
    # linears, norms and biases are identity.
    Rule(
        r"((?:conv_in|conv_out|conv_norm_out|time_embedding|add_embedding|down_blocks|"
        r"mid_block|up_blocks)(?:\..+)?)\.(weight|bias)",
        r"\1.\2",
        "conv2d",
    ),
]
