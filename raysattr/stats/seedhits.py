"""Which kept seqlets, and which of their shuffled copies, hold each seed k-mer.

The shuffled copies are the motif test's null from the data itself: every seqlet's letters
permuted within the seqlet (`SHUFFLES` copies, a fixed seed), so composition and length are kept
and only the order that makes a motif is lost. Counting is vectorized per k: window codes of all
seqlets at once, kept only where they are a seed's (canonical when both strands count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysattr.stats.flat import ALPHABETS, letter_codes
from raysattr.stats.strands import canonical

SHUFFLES = 4  # shuffled copies of each seqlet
SHUFFLE_SEED = 0


@dataclass
class SeedHits:
    """Seqlet indices holding each seed (on either strand when `both_strands`).

    Attributes:
        observed: `{seed: [h] sorted seqlet indices}`.
        shuffled: `{seed: [h'] seqlet index of each shuffled copy holding it}` (a seqlet counts
            once per copy that holds the seed).
        shuffles: copies per seqlet.
    """

    observed: dict[str, np.ndarray]
    shuffled: dict[str, np.ndarray]
    shuffles: int

    @classmethod
    def of(
        cls, sequences: list[str], seeds: list[str], alphabet: str, both_strands: bool
    ) -> SeedHits:
        """Hits of `seeds` (letters of `alphabet`) in `sequences` `[n]` and their shuffles."""
        codes, lengths = _encode(sequences, alphabet)
        n_letters = len(ALPHABETS[alphabet])
        rng = np.random.default_rng(SHUFFLE_SEED)
        copies = [_shuffle_within(codes, lengths, rng) for _ in range(SHUFFLES)]
        observed, shuffled = {}, {}
        for k in sorted({len(s) for s in seeds}):
            of_k = [s for s in seeds if len(s) == k]
            wanted = _seed_codes(of_k, alphabet, both_strands)
            observed.update(_hits(codes, lengths, k, wanted, of_k, both_strands, n_letters))
            per_copy = [_hits(c, lengths, k, wanted, of_k, both_strands, n_letters) for c in copies]
            for seed in of_k:
                shuffled[seed] = np.concatenate([hits[seed] for hits in per_copy])
        return cls(observed, shuffled, SHUFFLES)


def _encode(sequences: list[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Letter codes `[total]` (-1 outside the alphabet) and lengths `[n]`."""
    lengths = np.array([len(s) for s in sequences], np.int64)
    joined = "".join(sequences).encode("ascii", errors="replace")
    return letter_codes(alphabet)[np.frombuffer(joined, np.uint8)].astype(np.int64), lengths


def _shuffle_within(codes: np.ndarray, lengths: np.ndarray, rng) -> np.ndarray:
    """`codes` with each sequence's letters in a random order of their own."""
    segment = np.repeat(np.arange(len(lengths)), lengths)
    return codes[np.lexsort((rng.random(len(codes)), segment))]


def _seed_codes(seeds: list[str], alphabet: str, both_strands: bool) -> np.ndarray:
    """Code `[s]` of each seed (canonical when both strands count)."""
    letters = ALPHABETS[alphabet]
    codes = np.zeros(len(seeds), np.int64)
    for j in range(len(seeds[0])):
        codes = codes * len(letters) + np.array([letters.index(s[j]) for s in seeds])
    return canonical(codes, len(seeds[0]))[0] if both_strands else codes


def _hits(codes, lengths, k, wanted, seeds, both_strands, n_letters) -> dict[str, np.ndarray]:
    """`{seed: sorted unique sequence indices}` of windows of `k` letters coded as a seed."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    seq_of = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(codes)) - np.repeat(starts, lengths)
    idx = np.flatnonzero(pos <= lengths[seq_of] - k)
    window = np.zeros(len(idx), np.int64)
    bad = np.zeros(len(idx), bool)
    for j in range(k):
        c = codes[idx + j]
        bad |= c < 0
        window = window * n_letters + c
    window, idx = window[~bad], idx[~bad]
    if both_strands:
        window = canonical(window, k)[0]
    keep = np.isin(window, wanted)
    code_of, seq = window[keep], seq_of[idx[keep]]
    order = np.lexsort((seq, code_of))  # by code, then sequence
    code_of, seq = code_of[order], seq[order]
    first = np.ones(len(seq), bool)
    first[1:] = (code_of[1:] != code_of[:-1]) | (seq[1:] != seq[:-1])
    code_of, seq = code_of[first], seq[first]
    lo = np.searchsorted(code_of, wanted, "left")
    hi = np.searchsorted(code_of, wanted, "right")
    return {seed: seq[a:b] for seed, a, b in zip(seeds, lo, hi, strict=True)}
