"""The standard CLIP tokenizer files, derived from OpenAI's BPE merge list.

A single-file checkpoint carries no tokenizer, so edgegen ships OpenAI's CLIP merge list
(``data/clip_bpe_merges.txt.gz``: the first 48,894 lines of ``bpe_simple_vocab_16e6.txt.gz``,
MIT-licensed, 208 KB; the full file, also in ``open_clip_torch``, is read the same way).
OpenAI's tokenizer builds its vocabulary from that list in a fixed order, and that order is
exactly the id assignment of every Stable Diffusion tokenizer (49,408 entries), so the files
are rebuilt offline with no other package:

1. the 256 byte symbols, in the GPT-2 byte→unicode order (printable bytes first);
2. the same 256 symbols with the end-of-word suffix ``</w>``;
3. one token per merge, the first 48,894 merges of the list;
4. ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from edgegen.errors import ModelError
from edgegen.fileio import atomic_write_text

VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48,894: the rest of the list was never used by CLIP
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
BPE_PATH = Path(__file__).parent / "data" / "clip_bpe_merges.txt.gz"


def byte_symbols() -> list[str]:
    """The 256 byte symbols in GPT-2's byte-level order.

    Printable Latin-1 bytes stand for themselves; every other byte b is shifted to the code
    point 256 + (its rank among the non-printable bytes), so no symbol is whitespace or a
    control character. The list order (printable bytes first) fixes the ids 0..255.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    n_shifted = 256 - len(printable)
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(n_shifted)]


def derive_vocab(bpe_gz: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's ``vocab`` (token → id) and ``merges`` from OpenAI's gzipped merge list."""
    try:
        lines = gzip.decompress(Path(bpe_gz).read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ModelError(f"{str(bpe_gz)!r} is not a gzipped BPE merge list: {e}") from e
    # Line 0 is the "#version" header; the merges used by CLIP follow it.
    merges = [tuple(line.split()) for line in lines[1 : 1 + N_MERGES]]
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise ModelError(f"{str(bpe_gz)!r} does not hold {N_MERGES} two-part merges")
    symbols = byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges]
    tokens += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ModelError(f"{str(bpe_gz)!r} gives {len(vocab)} distinct tokens, not {VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


def write_tokenizer_files(
    out_dir: Path, bpe_gz: Path | None = None, pad_token: str = EOS, model_max_length: int = 77
) -> None:
    """Write an SD-style ``tokenizer/`` folder: vocab.json, merges.txt and the two configs.

    ``pad_token`` is ``<|endoftext|>`` for SD 1.x and ``!`` for SD 2.x / SDXL's second tokenizer.
    """
    vocab, merges = derive_vocab(bpe_gz or BPE_PATH)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    merge_lines = "".join(f"{a} {b}\n" for a, b in merges)
    atomic_write_text(out_dir / "merges.txt", "#version: 0.2\n" + merge_lines)
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {**special, "model_max_length": model_max_length, "tokenizer_class": "CLIPTokenizer"}
    atomic_write_text(out_dir / "tokenizer_config.json", json.dumps(config, indent=2))
    atomic_write_text(out_dir / "special_tokens_map.json", json.dumps(special, indent=2))
