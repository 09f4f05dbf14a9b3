"""Motifs as letter matrices: alignment of seqlets on a seed, trimming, similarity between
motifs (either strand), and MEME export/import. Which motifs exist is decided in
`raysattr.stats.discovery`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from raysattr.stats.flat import ALPHABETS, letter_codes
from raysattr.stats.strands import reverse_complement, reverse_complement_pwm

PSEUDOCOUNT = 0.01  # per letter, so columns with few letters stay defined
MIN_OVERLAP = 4  # columns two motifs must share to be compared


@dataclass
class Motif:
    """A reported motif.

    Attributes:
        pwm: `[width, A]` letter probabilities from `nsites` aligned seqlets.
        evalue: its motif-level q-value (`motifs.meme`'s E=), `log10_q` its log10 (no underflow).
        share: its seqlets / the kept seqlets of its class.
        log10_p: the motif test's p-value (seqlets vs their shuffles), log10.
        fold: its count in the pool of seqlets it was found in / the mean count in shuffles.
        merged: consensus of the redundant candidates merged into it.
        matches: database matches (`raysattr.stats.database`), best first.
    """

    name: str
    consensus: str
    seed: str
    klass: int
    pwm: np.ndarray
    nsites: int
    evalue: float
    share: float = float("nan")
    log10_p: float = float("nan")
    log10_q: float = float("nan")
    fold: float = float("nan")
    merged: list[str] = field(default_factory=list)
    matches: list[dict] = field(default_factory=list)


def aligned_counts(sequences: list[str], seed: str, alphabet: str, extend: int) -> np.ndarray:
    """`[len(seed) + 2 * extend, A]` letter counts of `sequences` aligned on their first `seed`,
    `extend` residues each side (letters outside a sequence or the alphabet are not counted)."""
    width = len(seed) + 2 * extend
    counts = np.zeros((width, len(ALPHABETS[alphabet])))
    if not sequences:
        return counts
    lengths = np.array([len(s) for s in sequences], np.int64)
    base = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    joined = "".join(sequences).encode("ascii", errors="replace")
    codes = letter_codes(alphabet)[np.frombuffer(joined, np.uint8)]
    at = np.array([s.find(seed) for s in sequences], np.int64) - extend
    pos = at[:, None] + np.arange(width)  # [m, W] position in each sequence
    inside = (pos >= 0) & (pos < lengths[:, None])
    letter = codes[base[:, None] + np.clip(pos, 0, lengths[:, None] - 1)]
    ok = inside & (letter >= 0)
    np.add.at(counts, (np.nonzero(ok)[1], letter[ok]), 1)
    return counts


def to_pwm(counts: np.ndarray) -> np.ndarray:
    """Letter probabilities `[W, A]` from counts, with `PSEUDOCOUNT` per letter."""
    counts = counts + PSEUDOCOUNT
    return counts / counts.sum(axis=1, keepdims=True)


def overlaps(seed: str, consensus: str, both_strands: bool = False) -> bool:
    """`seed` (or, both strands, its reverse complement) lies in `consensus` or hangs over one
    of its ends by a single letter (or less)."""
    if both_strands and _overlaps(reverse_complement(seed), consensus):
        return True
    return _overlaps(seed, consensus)


def _overlaps(seed: str, consensus: str) -> bool:
    if seed in consensus or consensus in seed:
        return True
    need = max(len(seed) - 1, 3)
    return any(
        seed[:n] == consensus[-n:] or seed[-n:] == consensus[:n]
        for n in range(need, min(len(seed), len(consensus)) + 1)
    )


def similarity(motif: np.ndarray, other: np.ndarray, both_strands: bool) -> tuple[float, int, int]:
    """How much of `other`'s information lies in columns that match `motif`, at the best
    ungapped offset (and strand, when both count).

    Column match is the overlap of the two letter distributions, sum_a min(p_a, q_a) in [0, 1];
    each of `other`'s columns weighs by its information, so uninformative flanks count little.

    Args:
        motif: `[W1, A]` letter probabilities.
        other: `[W2, A]` letter probabilities.

    Returns:
        `(score in [0, 1], offset, strand)`: `other`'s column j (reverse complemented when
        strand is -1) lies on `motif`'s column j + offset.
    """
    best = (0.0, 0, 1)
    for strand in (1, -1) if both_strands else (1,):
        b = other if strand > 0 else reverse_complement_pwm(other)
        bits = np.maximum(information(b), 0.0)
        if bits.sum() <= 0:
            continue
        need = min(MIN_OVERLAP, len(b), len(motif))
        for offset in range(need - len(b), len(motif) - need + 1):
            j = np.arange(max(0, -offset), min(len(b), len(motif) - offset))
            match = np.minimum(motif[j + offset], b[j]).sum(axis=1)
            score = float((bits[j] * match).sum() / bits.sum())
            if score > best[0]:
                best = (score, offset, strand)
    return best


def information(pwm: np.ndarray) -> np.ndarray:
    """Information content per column in bits, `[width]`."""
    return math.log2(pwm.shape[1]) + (pwm * np.log2(pwm)).sum(axis=1)


def trim_range(counts: np.ndarray, alphabet: str, min_bits: float | None = None) -> tuple[int, int]:
    """`[lo, hi)` from the first to the last column carrying at least `min_bits` (default a
    quarter of the alphabet's maximum) once scaled by its coverage (letters counted / the most
    any column has): a column past most seqlets' ends, seen in a few, is not informative even
    when those few agree. The whole matrix when no column is."""
    coverage = counts.sum(axis=1) / max(counts.sum(axis=1).max(), 1)
    bits = information(to_pwm(counts)) * coverage
    floor = min_bits if min_bits is not None else 0.25 * math.log2(len(ALPHABETS[alphabet]))
    keep = np.flatnonzero(bits >= floor)
    if not len(keep):
        return 0, len(counts)
    return int(keep[0]), int(keep[-1]) + 1


def to_meme(motifs: list[Motif], alphabet: str, background: np.ndarray | None = None) -> str:
    """MEME version 4 text (DNA or protein alphabet) for TOMTOM and friends."""
    letters = ALPHABETS[alphabet]
    if background is None or background.sum() <= 0:
        background = np.ones(len(letters))
    bg = background / background.sum()
    lines = ["MEME version 4", "", f"ALPHABET= {letters}", ""]
    if alphabet == "dna":
        lines += ["strands: + -", ""]
    lines += [
        "Background letter frequencies",
        " ".join(f"{c} {p:.4f}" for c, p in zip(letters, bg, strict=True)),
        "",
    ]
    for m in motifs:
        lines.append(f"MOTIF {m.name} {m.consensus}")
        lines.append(
            f"letter-probability matrix: alength= {len(letters)} w= {len(m.pwm)} "
            f"nsites= {m.nsites} E= {_evalue(m)}"
        )
        lines += [" ".join(f"{p:.6f}" for p in row) for row in m.pwm]
        lines.append("")
    return "\n".join(lines)


def _evalue(m: Motif) -> str:
    """The E= field from log10 when the value itself underflows (q-values reach 1e-1000)."""
    if m.evalue > 0 or not math.isfinite(m.log10_q):
        return f"{m.evalue:.3g}"
    exponent = math.floor(m.log10_q)
    return f"{10 ** (m.log10_q - exponent):.3g}e{exponent:+d}"


_MATRIX = re.compile(r"letter-probability matrix:(?P<attrs>[^\n]*)")


def read_meme(text: str) -> list[dict]:
    """Parse MEME text: `[{name, consensus, alphabet, pwm [W, A], nsites, evalue}]`.

    Raises:
        ValueError: a MOTIF without a letter-probability matrix of w x alength numbers.
    """
    alphabet = ""
    match = re.search(r"^ALPHABET\s*=\s*(\S+)", text, re.MULTILINE)
    if match:
        alphabet = match.group(1)
    motifs = []
    for block in re.split(r"^MOTIF\s+", text, flags=re.MULTILINE)[1:]:
        head, _, rest = block.partition("\n")
        names = head.split()
        found = _MATRIX.search(rest)
        if not names or not found:
            raise ValueError(
                f"motifs.meme: MOTIF {head.strip()!r} has no letter-probability matrix"
            )
        attrs = dict(re.findall(r"(\w+)\s*=\s*(\S+)", found.group("attrs")))
        width = int(attrs.get("w", 0))
        lines = rest[found.end() :].strip().splitlines()[:width]
        pwm = np.array([[float(v) for v in line.split()] for line in lines], np.float64)
        if pwm.shape[0] != width or (width and pwm.shape[1] != int(attrs.get("alength", 0))):
            raise ValueError(f"motifs.meme: MOTIF {names[0]!r}: matrix is not w x alength")
        motifs.append(
            {
                "name": names[0],
                "consensus": names[1] if len(names) > 1 else "",
                "alphabet": alphabet,
                "pwm": pwm,
                "nsites": int(float(attrs.get("nsites", 0))),
                "evalue": float(attrs.get("E", "nan")),
            }
        )
    return motifs
