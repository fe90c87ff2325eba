"""Weight mapping for CLIP text encoders (transformers layout → ``edgegen.models.clip``).

The MLX modules carry transformers' own names, so the mapping is the identity apart from one
prefix: checkpoints saved by transformers 4 (every real SD repo) name the tower
``text_model.…``, while transformers 5 saves a plain ``CLIPTextModel`` without that prefix.
Both load; a file mixing the two fails as a duplicate in ``map_weights``.
"""

from __future__ import annotations

from edgegen.converters.mapping import Rule

RULES = [
    # A non-trainable arange(77) buffer that older transformers versions saved; nothing to load.
    Rule(r"(?:text_model\.)?embeddings\.position_ids", None),
    Rule(r"(?:text_model\.)?((?:embeddings|encoder|final_layer_norm)\..+)", r"text_model.\1"),
    # Only in CLIPTextModelWithProjection (SDXL's text_encoder_2).
    Rule(r"text_projection\.weight", "text_projection.weight"),
]
