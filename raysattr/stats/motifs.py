"""Seqlets grouped into motifs with position weight matrices, and MEME export/import.

Grouping by alignment on seeds: significant k-mers in rank order seed motifs; every not yet
assigned seqlet of the seed's class that contains the seed is aligned on its first occurrence
(extended by `extend` residues each side) and counted into the seed's matrix. A seed is kept when it
gathers `min_seqlets`; overlapping k-mers of one motif therefore collapse into the first (best)
seed, and seeds inside a found motif (or overhanging its ends by one letter) are skipped.
Matrix columns that carry little information are trimmed from both ends.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raysattr.stats.flat import ALPHABETS

MAX_SEEDS = 500


@dataclass
class Motif:
    """A motif: `pwm` `[width, A]` letter probabilities, built from `nsites` aligned seqlets."""

    name: str
    consensus: str
    seed: str
    klass: int
    pwm: np.ndarray
    nsites: int
    evalue: float


def group_seqlets(
    seqlets: dict,
    motif_stats: pa.Table,
    alphabet: str,
    top_motifs: int,
    min_seqlets: int,
    extend: int = 4,
) -> tuple[list[Motif], np.ndarray]:
    """Motifs from the kept seqlets (`SeqletStore.sorted_cols()`), and `[m]` motif index per
    seqlet (-1: none)."""
    n = len(seqlets.get("ids", []))
    assigned = np.full(n, -1, np.int64)
    if alphabet == "text" or n == 0 or motif_stats.num_rows == 0:
        return [], assigned
    sig = motif_stats.filter(motif_stats.column("significant"))
    seeds = zip(
        sig.column("motif").to_pylist()[:MAX_SEEDS],
        sig.column("class").to_pylist()[:MAX_SEEDS],
        sig.column("q").to_pylist()[:MAX_SEEDS],
        strict=True,
    )
    sequences, classes = seqlets["sequence"], seqlets["classes"]
    motifs: list[Motif] = []
    for seed, klass, q in seeds:
        if len(motifs) >= top_motifs:
            break
        if any(_overlaps(seed, m.consensus) for m in motifs if m.klass == klass):
            continue  # a piece or an edge of a motif already found (those k-mers are enriched too)
        members = [
            i for i in np.flatnonzero((assigned < 0) & (classes == klass)) if seed in sequences[i]
        ]
        if len(members) < min_seqlets:
            continue
        pwm = _aligned_pwm([sequences[i] for i in members], seed, alphabet, extend)
        pwm = _trim(pwm, alphabet)
        assigned[members] = len(motifs)
        consensus = "".join(ALPHABETS[alphabet][j] for j in pwm.argmax(axis=1))
        motifs.append(
            Motif(
                f"raysattr_{len(motifs) + 1}",
                consensus,
                seed,
                int(klass),
                pwm,
                len(members),
                float(q),
            )
        )
    return motifs, assigned


def _overlaps(seed: str, consensus: str) -> bool:
    """`seed` lies in `consensus` or hangs over one of its ends by a single letter (or less)."""
    if seed in consensus or consensus in seed:
        return True
    need = max(len(seed) - 1, 3)
    return any(
        seed[:n] == consensus[-n:] or seed[-n:] == consensus[:n]
        for n in range(need, min(len(seed), len(consensus)) + 1)
    )


def _aligned_pwm(sequences: list[str], seed: str, alphabet: str, extend: int) -> np.ndarray:
    letters = ALPHABETS[alphabet]
    index = {c: i for i, c in enumerate(letters)}
    width = len(seed) + 2 * extend
    counts = np.zeros((width, len(letters)))
    for seq in sequences:
        at = seq.find(seed) - extend
        for j in range(width):
            p = at + j
            if 0 <= p < len(seq) and seq[p] in index:
                counts[j, index[seq[p]]] += 1
    counts += 0.01  # a pseudocount so columns with few letters stay defined
    return counts / counts.sum(axis=1, keepdims=True)


def information(pwm: np.ndarray) -> np.ndarray:
    """Information content per column in bits, `[width]`."""
    return math.log2(pwm.shape[1]) + (pwm * np.log2(pwm)).sum(axis=1)


def _trim(pwm: np.ndarray, alphabet: str, min_bits: float | None = None) -> np.ndarray:
    bits = information(pwm)
    floor = min_bits if min_bits is not None else 0.25 * math.log2(len(ALPHABETS[alphabet]))
    keep = np.flatnonzero(bits >= floor)
    if not len(keep):
        return pwm
    return pwm[keep[0] : keep[-1] + 1]


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
            f"nsites= {m.nsites} E= {m.evalue:.3g}"
        )
        lines += [" ".join(f"{p:.6f}" for p in row) for row in m.pwm]
        lines.append("")
    return "\n".join(lines)


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
