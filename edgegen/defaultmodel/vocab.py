"""A reduced CLIP BPE vocabulary that tokenizes the caption grammar exactly as real CLIP does.

The full CLIP vocabulary (49,408 tokens) would cost 49,408 × hidden-size embedding weights, most
of them never trained by our captions. Instead we keep:

1. the 256 byte symbols and their 256 end-of-word forms (so *any* text still tokenizes);
2. only the merges that real CLIP's BPE applies while tokenizing the words of the caption
   grammar, in their original rank order;
3. ``<|startoftext|>`` and ``<|endoftext|>``.

Because BPE always applies the lowest-ranked applicable merge, and every merge CLIP applies to a
grammar word is kept with its relative rank, the reduced BPE splits every grammar word into the
same tokens as the full one. Words outside the grammar fall back to shorter pieces (ultimately
bytes): the model was never trained on them anyway. The result is an ordinary CLIP-format
``vocab.json`` + ``merges.txt`` that edgegen, transformers and diffusers all read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgegen.converters.clip_vocab import (
    BOS,
    BPE_PATH,
    END_OF_WORD,
    EOS,
    byte_symbols,
    derive_vocab,
    write_tokenizer_files,
)


def _word_symbols(word: str) -> list[str]:
    table = byte_symbols_by_value()
    symbols = [table[b] for b in word.encode("utf-8")]
    symbols[-1] += END_OF_WORD
    return symbols


def byte_symbols_by_value() -> list[str]:
    """byte value → its printable symbol (``byte_symbols`` lists them in id order instead)."""
    symbols = byte_symbols()
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    order = printable + [b for b in range(256) if b not in set(printable)]
    by_value = [""] * 256
    for symbol, value in zip(symbols, order, strict=True):
        by_value[value] = symbol
    return by_value


def merges_used(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies to one lowercase word, in the order it applies them."""
    symbols = _word_symbols(word)
    used = []
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:], strict=False)}
        best = min(pairs, key=lambda p: ranks.get(p, 1 << 30))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return used


def reduced_vocab(
    words: Iterable[str], bpe_gz: Path | None = None
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-format (vocab, merges) covering ``words`` with CLIP's own tokenization."""
    _, merges = derive_vocab(bpe_gz or BPE_PATH)
    ranks = {m: i for i, m in enumerate(merges)}
    keep: set[tuple[str, str]] = set()
    for word in words:
        keep.update(merges_used(word.lower(), ranks))
    kept = sorted(keep, key=ranks.__getitem__)
    symbols = byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in kept]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, kept


def write_reduced_tokenizer(out_dir: Path, words: Iterable[str], model_max_length: int = 77) -> int:
    """Write ``tokenizer/`` (SD 1.x conventions: pad with ``<|endoftext|>``); returns its size."""
    import json

    from edgegen.fileio import atomic_write_text

    vocab, merges = reduced_vocab(words)
    write_tokenizer_files(
        out_dir, model_max_length=model_max_length
    )  # the configs; vocab and merges are replaced just below
    atomic_write_text(Path(out_dir) / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    atomic_write_text(Path(out_dir) / "merges.txt", "#version: 0.2\n" + lines)
    return len(vocab)
