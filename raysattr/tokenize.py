"""Tokenization schemes. Every scheme maps one sequence to content token ids plus the residues
each token covers, so token scores can later be turned into residue scores.

Normalisation (documented behaviour, the same in every run):

- all schemes: an empty (or whitespace-only) sequence is an error row (`empty_sequence`); a
  missing value is an error row (`missing_sequence`).
- `kmer` (DNA, DNABERT style, overlapping k-mers with stride 1): whitespace is removed, letters are
  upper-cased (when `tokenize.uppercase`), `U` becomes `T`. A k-mer absent from the vocabulary
  (one holding `N` or any non-ACGT letter) becomes `[UNK]` and is counted in `n_unknown`. Non-ASCII
  characters make the row an error (`invalid_characters`); a sequence shorter than k is an error
  (`too_short`).
- `residue` (protein, ProtBert style, one token per residue): whitespace is removed, letters are
  upper-cased, one trailing `*` (stop codon) is dropped. A residue absent from the vocabulary (`*`
  inside, digits, `-`) becomes `[UNK]` and is counted. Non-ASCII characters make the row an error.
- `text`: the model's own (fast) tokenizer with character offsets; non-ASCII is fine.

Residues are characters of the *normalised* sequence (`TokenizedRow.residues`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PROTBERT_LETTERS = "LAGVESIKRDTPNQFYMHCWXUBZO"  # ProtBert's vocabulary order after the specials
DNA_LETTERS = "ACGT"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids


@dataclass
class TokenizedRow:
    """One sequence after tokenization.

    Attributes:
        content_ids: token ids without special tokens, `[n_tokens]` int64.
        spans: residue range `[start, end)` each token covers, `[n_tokens, 2]` int32.
        residues: the normalised sequence whose characters are the residues.
        n_unknown: tokens mapped to the unknown token.
        error_code: None when usable; otherwise a short code (`empty_sequence`, ...).
        error: human-readable message for error rows.
    """

    content_ids: np.ndarray
    spans: np.ndarray
    residues: str
    n_unknown: int = 0
    error_code: str | None = None
    error: str | None = None

    @property
    def n_tokens(self) -> int:
        return int(len(self.content_ids))

    @property
    def length(self) -> int:
        return len(self.residues)

    @property
    def ok(self) -> bool:
        return self.error_code is None


def error_row(code: str, message: str, residues: str = "") -> TokenizedRow:
    """A row that cannot be attributed; it still becomes an output row."""
    empty = np.zeros(0, dtype=np.int64)
    return TokenizedRow(empty, np.zeros((0, 2), np.int32), residues, 0, code, message)


class Tokenizer(Protocol):
    def __call__(self, sequence: Any) -> TokenizedRow: ...


def build_kmer_vocab(k: int) -> list[str]:
    """DNABERT-layout vocabulary: the five specials, then all 4^k k-mers in lexicographic order."""
    kmers = ("".join(p) for p in itertools.product(DNA_LETTERS, repeat=k))
    return [*SPECIAL_TOKENS, *kmers]


def build_protein_vocab() -> list[str]:
    """ProtBert-layout vocabulary: the five specials, then 25 residue letters."""
    return [*SPECIAL_TOKENS, *PROTBERT_LETTERS]


def _check_text(sequence: Any) -> TokenizedRow | None:
    if sequence is None or (isinstance(sequence, float) and np.isnan(sequence)):
        return error_row("missing_sequence", "sequence is missing (null)")
    if not isinstance(sequence, str):
        return error_row("invalid_sequence", f"sequence is {type(sequence).__name__}, not str")
    if not sequence.strip():
        return error_row("empty_sequence", "sequence is empty")
    return None


def _normalise_letters(sequence: str, uppercase: bool) -> tuple[str, TokenizedRow | None]:
    """Remove whitespace, optionally upper-case; non-ASCII makes an error row."""
    seq = "".join(sequence.split())
    if uppercase:
        seq = seq.upper()
    if not seq.isascii():
        bad = sorted({c for c in seq if not c.isascii()})
        shown = ", ".join(repr(c) for c in bad[:5])
        return seq, error_row("invalid_characters", f"non-ASCII characters {shown}", seq)
    return seq, None


def _prepare_letters(sequence: Any, uppercase: bool) -> tuple[str, TokenizedRow | None]:
    """Shared prelude of the letter schemes: reject missing/empty, then normalise letters."""
    bad = _check_text(sequence)
    if bad is not None:
        return "", bad
    return _normalise_letters(sequence, uppercase)


class KmerTokenizer:
    """Overlapping k-mers (stride 1); token i covers residues [i, i + k)."""

    def __init__(self, vocab: dict[str, int], k: int, unk_id: int, uppercase: bool = True):
        self.vocab, self.k, self.unk_id, self.uppercase = vocab, k, unk_id, uppercase

    def __call__(self, sequence: Any) -> TokenizedRow:
        seq, bad = _prepare_letters(sequence, self.uppercase)
        if bad is not None:
            return bad
        seq = seq.replace("U", "T")
        if len(seq) < self.k:
            return error_row("too_short", f"{len(seq)} nt is shorter than k={self.k}", seq)
        n = len(seq) - self.k + 1
        ids = np.fromiter(
            (self.vocab.get(seq[i : i + self.k], self.unk_id) for i in range(n)),
            dtype=np.int64,
            count=n,
        )
        starts = np.arange(n, dtype=np.int32)
        spans = np.stack([starts, starts + self.k], axis=1)
        return TokenizedRow(ids, spans, seq, int((ids == self.unk_id).sum()))


class ResidueTokenizer:
    """One token per residue letter (ProtBert style)."""

    def __init__(self, vocab: dict[str, int], unk_id: int, uppercase: bool = True):
        self.vocab, self.unk_id, self.uppercase = vocab, unk_id, uppercase

    def __call__(self, sequence: Any) -> TokenizedRow:
        seq, bad = _prepare_letters(sequence, self.uppercase)
        if bad is not None:
            return bad
        if seq.endswith("*"):
            seq = seq[:-1]
        if not seq:
            return error_row("empty_sequence", "sequence is empty after removing '*'")
        ids = np.fromiter((self.vocab.get(c, self.unk_id) for c in seq), np.int64, len(seq))
        starts = np.arange(len(seq), dtype=np.int32)
        return TokenizedRow(
            ids, np.stack([starts, starts + 1], axis=1), seq, int((ids == self.unk_id).sum())
        )


class TextTokenizer:
    """The model's own fast tokenizer; residues are characters, spans are character offsets."""

    def __init__(self, hf_tokenizer: Any):
        if not getattr(hf_tokenizer, "is_fast", False):
            raise ValueError(
                "tokenize.scheme='text' needs a fast tokenizer (character offsets); "
                f"{type(hf_tokenizer).__name__} is not one"
            )
        self.hf = hf_tokenizer

    def __call__(self, sequence: Any) -> TokenizedRow:
        bad = _check_text(sequence)
        if bad is not None:
            return bad
        enc = self.hf(sequence, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        spans = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        unk = self.hf.unk_token_id
        n_unknown = int((ids == unk).sum()) if unk is not None else 0
        return TokenizedRow(ids, spans, sequence, n_unknown)


def make_tokenizer(scheme: str, hf_tokenizer: Any, k: int = 6, uppercase: bool = True) -> Tokenizer:
    """Build the tokenizer for `scheme` on the model's own vocabulary.

    Raises:
        ValueError: unknown scheme, or the vocabulary lacks what the scheme needs.
    """
    if scheme == "text":
        return TextTokenizer(hf_tokenizer)
    vocab = hf_tokenizer.get_vocab()
    unk_id = hf_tokenizer.unk_token_id
    if unk_id is None:
        raise ValueError(f"tokenize.scheme={scheme!r} needs a tokenizer with an unknown token")
    if scheme == "kmer":
        probe = "A" * k
        if probe not in vocab:
            raise ValueError(
                f"tokenize.k={k}: the model vocabulary has no {k}-mers (no {probe!r}); "
                "is this a DNABERT-style model with a different k?"
            )
        return KmerTokenizer(vocab, k, unk_id, uppercase)
    if scheme == "residue":
        if "A" not in vocab:
            raise ValueError("tokenize.scheme='residue': the vocabulary has no residue letters")
        return ResidueTokenizer(vocab, unk_id, uppercase)
    raise ValueError(f"tokenize.scheme={scheme!r} is not one of residue, kmer, text")


def token_to_residue(token_scores: np.ndarray, spans: np.ndarray, length: int) -> np.ndarray:
    """Residue scores: each residue gets the mean score of the tokens covering it (0 if none).

    Args:
        token_scores: `[n_tokens]` content-token scores (no specials).
        spans: `[n_tokens, 2]` half-open residue ranges.
        length: number of residues.

    Returns:
        `[length]` float32.
    """
    sums, counts = residue_sums(token_scores, spans, length)
    out = np.zeros(length, dtype=np.float64)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out.astype(np.float32)


def residue_sums(
    token_scores: np.ndarray, spans: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of covering token scores and number of covering tokens per residue, `[length]` each.

    A difference array keeps this O(tokens + length) for any span width; windows of a long
    sequence add their sums and counts, which averages overlaps.
    """
    diff_sum = np.zeros(length + 1, dtype=np.float64)
    diff_cnt = np.zeros(length + 1, dtype=np.float64)
    starts, ends = spans[:, 0], spans[:, 1]
    np.add.at(diff_sum, starts, token_scores)
    np.add.at(diff_sum, ends, -np.asarray(token_scores, dtype=np.float64))
    np.add.at(diff_cnt, starts, 1.0)
    np.add.at(diff_cnt, ends, -1.0)
    return np.cumsum(diff_sum)[:length], np.rint(np.cumsum(diff_cnt)[:length])
