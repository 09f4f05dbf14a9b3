"""Both DNA strands: reverse complements of sequences, k-mer codes and letter matrices.

A double-stranded site reads as the motif on one strand and as its reverse complement on the
other; with `stats.both_strands` (DNA only) a k-mer and its reverse complement are one k-mer
(keyed by the smaller code, the *canonical* one) and seqlets align on either strand.
"""

from __future__ import annotations

import numpy as np

_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
DNA_SIZE = 4  # codes follow ALPHABETS["dna"] = "ACGT": the complement of code c is 3 - c


def uses_both_strands(alphabet: str, both_strands: bool) -> bool:
    """`stats.both_strands` applies to DNA only (proteins and text have one reading)."""
    return both_strands and alphabet == "dna"


def reverse_complement(seq: str) -> str:
    """`ACGGT` -> `ACCGT`; letters outside ACGTN are kept (reversed)."""
    return seq.translate(_COMPLEMENT)[::-1]


def reverse_complement_codes(codes: np.ndarray, k: int) -> np.ndarray:
    """Codes `[m]` of the reverse complements of DNA k-mers coded `sum_j d_j * 4**(k-1-j)`."""
    rc = np.zeros(len(codes), np.int64)
    rest = codes.astype(np.int64)
    for _ in range(k):  # the last letter of the k-mer becomes the first of its complement
        rest, digit = np.divmod(rest, DNA_SIZE)
        rc = rc * DNA_SIZE + (DNA_SIZE - 1 - digit)
    return rc


def canonical(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(canonical codes [m], forward [m] bool)`: the smaller of each code and its reverse
    complement's, and whether the k-mer was read on the canonical strand (palindromes: True)."""
    rc = reverse_complement_codes(codes, k)
    return np.minimum(codes, rc), codes <= rc


def reverse_complement_pwm(pwm: np.ndarray) -> np.ndarray:
    """`[W, 4]` letter matrix of the other strand (columns reversed, A<->T and C<->G)."""
    return pwm[::-1, ::-1].copy()
