"""CLIP BPE tokenizer, giving the same ids as transformers' ``CLIPTokenizer`` (the one diffusers
uses) with ``padding="max_length", truncation=True``.

Built on the ``tokenizers`` library with CLIP's pipeline: NFC, whitespace runs collapsed to one
space, lowercase; CLIP's split regex (contractions, letter runs, single digits, punctuation
runs) followed by byte-level symbols; BPE with the ``</w>`` end-of-word suffix; then
``<|startoftext|> … <|endoftext|>`` and padding to ``model_max_length`` (77).

The vocabulary comes from a model's ``tokenizer/`` folder in either form found in the wild:
``vocab.json`` + ``merges.txt`` (every SD repo; SD 1.5 has nothing else) or ``tokenizer.json``
(all that transformers 5 saves). Special tokens are read, never assumed: SD 1.x pads with
``<|endoftext|>`` (49407) and SD 2.x with ``!`` (0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from edgegen.errors import ModelError, UnsupportedModelError
from edgegen.fileio import read_json

# OpenAI CLIP's pre-tokenizer pattern, as transformers' CLIPTokenizer spells it for `tokenizers`.
CLIP_SPLIT = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)
END_OF_WORD = "</w>"
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
# transformers' CLIPTokenizer defaults, used when a folder's configs do not name a token.
DEFAULT_SPECIALS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}
# CLIP's context length; every SD tokenizer config says so, older ones may omit it.
DEFAULT_MAX_LENGTH = 77
UNBOUNDED = 10**6  # a model_max_length above this means "not set"


@dataclass(frozen=True)
class TokenizedBatch:
    ids: np.ndarray  # (B, max_length) int32: <bos> tokens <eos> <pad>…
    truncated: list[str | None]  # per prompt: the text that did not fit, or None


def _token_fields(value: str | dict[str, Any]) -> dict[str, Any]:
    # Configs hold a token either as a bare string or as a serialized AddedToken.
    if isinstance(value, str):
        return {"content": value}
    return {k: v for k, v in value.items() if k not in ("__type", "id")}


def _added_token(fields: dict[str, Any], special: bool) -> AddedToken:
    flags = ("single_word", "lstrip", "rstrip", "normalized")
    return AddedToken(
        fields["content"], special=special, **{k: bool(fields[k]) for k in flags if k in fields}
    )


def _read_vocab(tokenizer_dir: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    # tokenizer.json wins when both forms exist, as in transformers.
    if (tokenizer_dir / "tokenizer.json").is_file():
        model = read_json(tokenizer_dir / "tokenizer.json").get("model") or {}
        if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
            raise UnsupportedModelError(
                f"{str(tokenizer_dir / 'tokenizer.json')!r} holds a {model.get('type')!r} "
                "model; only CLIP's BPE is supported"
            )
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return model["vocab"], merges  # type: ignore[return-value]
    vocab_path, merges_path = tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        raise ModelError(
            f"{str(tokenizer_dir)!r} holds no CLIP tokenizer: "
            "expected tokenizer.json, or vocab.json and merges.txt"
        )
    vocab = read_json(vocab_path)
    merges = []
    for line in merges_path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ModelError(f"{str(merges_path)!r}: malformed merge line {line!r}")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def _read_specials(
    tokenizer_dir: Path,
) -> tuple[dict[str, str | dict[str, Any]], dict[int, dict[str, Any]], int]:
    """Named special tokens, the added-token table (id → fields) and model_max_length."""
    config_path = tokenizer_dir / "tokenizer_config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    specials = {k: config.get(k) or DEFAULT_SPECIALS[k] for k in SPECIAL_KEYS}
    if "added_tokens_decoder" in config:
        added = {int(i): _token_fields(t) for i, t in config["added_tokens_decoder"].items()}
    else:
        # Older configs, as transformers reads them: special_tokens_map.json overrides
        # tokenizer_config.json (this is how SD 2 pads with "!" although its config names
        # <|endoftext|>), and tokenizer.json's added_tokens carry the matching flags.
        map_path = tokenizer_dir / "special_tokens_map.json"
        if map_path.is_file():
            overrides = read_json(map_path)
            specials.update({k: overrides[k] for k in SPECIAL_KEYS if overrides.get(k)})
        json_path = tokenizer_dir / "tokenizer.json"
        entries = read_json(json_path).get("added_tokens", []) if json_path.is_file() else []
        added = {int(t["id"]): _token_fields(t) for t in entries}
    max_length = config.get("model_max_length", DEFAULT_MAX_LENGTH)
    # transformers writes int(1e30) (its VERY_LARGE_INTEGER) for "no limit"; a CLIP text
    # encoder still has 77 positions, and padding to 1e30 would exhaust memory.
    if not isinstance(max_length, int | float) or max_length > UNBOUNDED:
        max_length = DEFAULT_MAX_LENGTH
    return specials, added, int(max_length)


class CLIPTokenizer:
    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        specials: dict[str, str | dict[str, Any]] | None = None,
        added_tokens: dict[int, dict[str, Any]] | None = None,
        model_max_length: int = DEFAULT_MAX_LENGTH,
    ):
        """``specials``: bos/eos/unk/pad_token as strings or AddedToken dicts; ``added_tokens``:
        id → AddedToken fields (tokenizer.json's ``added_tokens`` / ``added_tokens_decoder``)."""
        added = dict(sorted((added_tokens or {}).items()))
        for token_id, fields in added.items():
            if vocab.get(fields["content"]) != token_id:
                raise UnsupportedModelError(
                    f"added token {fields['content']!r} (id {token_id}) is not in the CLIP "
                    "vocabulary; extra tokens (e.g. textual inversion) are not supported"
                )
        by_content = {f["content"]: f for f in added.values()}
        named = {}
        for key, value in {**DEFAULT_SPECIALS, **(specials or {})}.items():
            fields = _token_fields(value)
            named[key] = by_content.get(fields["content"], fields)
            if fields["content"] not in vocab:
                raise ModelError(f"tokenizer {key} {fields['content']!r} is not in the vocabulary")
        if model_max_length < 2:
            raise ModelError(
                f"tokenizer model_max_length must be at least 2, got {model_max_length}"
            )
        self.model_max_length = model_max_length
        self.bos_id = vocab[named["bos_token"]["content"]]
        self.eos_id = vocab[named["eos_token"]["content"]]
        self.pad_id = vocab[named["pad_token"]["content"]]

        tok = Tokenizer(
            BPE(
                vocab=vocab,
                merges=merges,
                continuing_subword_prefix="",
                end_of_word_suffix=END_OF_WORD,
                fuse_unk=False,
                unk_token=named["unk_token"]["content"],
            )
        )
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        # Added and special tokens typed in a prompt are matched whole before BPE, as in
        # transformers (a literal "<|endoftext|>" is one token; so is SD 2's "!" pad token), on
        # the normalized (lowercased) text only when their "normalized" flag says so.
        special_contents = {f["content"] for f in named.values()}
        table = {f["content"]: f for f in added.values()}
        table.update({f["content"]: f for f in named.values() if f["content"] not in table})
        tokens = [
            _added_token(f, special=bool(f.get("special")) or c in special_contents)
            for c, f in table.items()
        ]
        tok.add_special_tokens([t for t in tokens if t.special])
        tok.add_tokens([t for t in tokens if not t.special])
        self._tok = tok

    @classmethod
    def from_dir(cls, tokenizer_dir: Path) -> CLIPTokenizer:
        """Load a model's ``tokenizer/`` folder (either file form, see the module docstring)."""
        tokenizer_dir = Path(tokenizer_dir)
        if not tokenizer_dir.is_dir():
            raise ModelError(f"tokenizer folder {str(tokenizer_dir)!r} does not exist")
        vocab, merges = _read_vocab(tokenizer_dir)
        specials, added, max_length = _read_specials(tokenizer_dir)
        return cls(vocab, merges, specials, added, max_length)

    def encode(self, prompts: list[str], max_length: int | None = None) -> TokenizedBatch:
        """Token ids padded to ``max_length`` (default ``model_max_length``), truncated to fit.

        ``truncated[i]`` is the text of the tokens that did not fit (what diffusers warns
        about), or None when the whole prompt fits.
        """
        length = max_length or self.model_max_length
        room = length - 2  # <bos> and <eos> always stay
        ids = np.full((len(prompts), length), self.pad_id, dtype=np.int32)
        truncated: list[str | None] = []
        for row, enc in enumerate(self._tok.encode_batch(prompts, add_special_tokens=False)):
            tokens = enc.ids
            kept = tokens[:room]
            ids[row, 0] = self.bos_id
            ids[row, 1 : 1 + len(kept)] = kept
            ids[row, 1 + len(kept)] = self.eos_id
            truncated.append(self.decode(tokens[room:]) if len(tokens) > room else None)
        return TokenizedBatch(ids=ids, truncated=truncated)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (special tokens kept), words separated by single spaces."""
        text = self._tok.decode(list(ids), skip_special_tokens=False)
        return text.replace(END_OF_WORD, " ").strip()
