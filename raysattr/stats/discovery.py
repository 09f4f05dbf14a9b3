"""Motifs from the kept seqlets, each tested as a motif, not only through its seed k-mer.

1. Candidates: significant k-mers in rank order seed motifs. The not yet assigned seqlets of the
   seed's class that hold the seed (or, both strands, its reverse complement) are aligned on it
   (on the strand it was read on) and make the candidate's letter matrix. Seeds that are a piece
   of a candidate already found, or overhang its ends by one letter, are skipped.
2. Redundancy: a candidate whose informative columns mostly match an earlier candidate of its
   class (shifted, partial, or on the other strand) is merged into it (`motifs.similarity`).
3. Motif test: x of the n pool seqlets (unassigned, of the class) hold the seed, y of their
   `SHUFFLES * n` shuffled copies do; P(X >= x) of the hypergeometric draw of the n originals
   from all of them (a one-sided Fisher test, "order matters"). Seeds were picked by looking
   at every k-mer, so Benjamini–Hochberg counts every tested k-mer of `motif_stats` as a
   hypothesis (those that seeded nothing with p = 1), not only the candidates. A motif is
   reported when q < `motif_alpha`, it is at least `MIN_FOLD` times as frequent as in the
   shuffles, and its seqlets make at least `min_motif_share` of its class's kept seqlets; the
   rest (and their seqlets) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.stats.enrichment import LN10, bh_log_q, log_sf
from raysattr.stats.flat import ALPHABETS
from raysattr.stats.motifs import (
    Motif,
    aligned_counts,
    overlaps,
    similarity,
    to_pwm,
    trim_range,
)
from raysattr.stats.seedhits import SeedHits
from raysattr.stats.settings import StatsSettings
from raysattr.stats.strands import reverse_complement

MAX_SEEDS = 500
EXTEND = 4  # residues each side of the seed counted into a candidate's matrix
REDUNDANT = 0.8  # share of a candidate's information in columns matching an earlier motif
# A seed is chosen because its k-mer tests passed on these same rows, so its count among the
# seqlets is biased upwards; a motif must also be this many times as frequent as in shuffles.
MIN_FOLD = 2.0
REJECTED_LISTED = 20


@dataclass
class Candidate:
    """A motif under test: `counts` `[W, A]` letters of its aligned seqlets (trimmed)."""

    seed: str
    klass: int
    counts: np.ndarray
    members: list[int]
    log_p: float
    fold: float
    merged: list[str] = field(default_factory=list)

    @property
    def pwm(self) -> np.ndarray:
        return to_pwm(self.counts)


@dataclass
class Discovery:
    """Reported motifs, each kept seqlet's motif index (-1: none) and strand (+1, -1; 0: none),
    and the candidates that were not reported (`stats.json` lists them)."""

    motifs: list[Motif]
    motif_of: np.ndarray
    strand_of: np.ndarray
    rejected: list[dict] = field(default_factory=list)


def discover(seqlets: dict, motif_stats: pa.Table, st: StatsSettings) -> Discovery:
    """Motifs from the kept seqlets (`SeqletStore.sorted_cols()`) seeded by `motif_stats`."""
    n = len(seqlets.get("ids", []))
    none = Discovery([], np.full(n, -1, np.int64), np.zeros(n, np.int8))
    if st.alphabet == "text" or n == 0 or motif_stats.num_rows == 0:
        return none
    sig = motif_stats.filter(motif_stats.column("significant")).slice(0, MAX_SEEDS)
    seeds = list(zip(sig.column("motif").to_pylist(), sig.column("class").to_pylist(), strict=True))
    if not seeds:
        return none
    sequences, classes = list(seqlets["sequence"]), np.asarray(seqlets["classes"])
    hits = SeedHits.of(sequences, sorted({s for s, _ in seeds}), st.alphabet, st.both_strands)
    found = _Greedy(sequences, classes, hits, st, _hypotheses(motif_stats))
    for seed, klass in seeds:
        if len(found.candidates) >= 3 * st.top_motifs:
            break
        found.try_seed(seed, int(klass))
    return found.report()


class _Greedy:
    """Candidates found so far and the seqlets they took."""

    def __init__(self, sequences, classes, hits: SeedHits, st: StatsSettings, hypotheses: int):
        self.sequences, self.classes, self.hits, self.st = sequences, classes, hits, st
        self.hypotheses = hypotheses
        self.assigned = np.full(len(sequences), -1, np.int64)
        self.strand = np.zeros(len(sequences), np.int8)
        self.candidates: list[Candidate] = []

    def try_seed(self, seed: str, klass: int) -> None:
        st = self.st
        mine = [c for c in self.candidates if c.klass == klass]
        if any(overlaps(seed, _consensus(c, st.alphabet), st.both_strands) for c in mine):
            return  # a piece or an edge of a motif already found (those k-mers are enriched too)
        pool = (self.assigned < 0) & (self.classes == klass)
        members = self.hits.observed[seed]
        members = members[pool[members]]
        if len(members) < st.min_motif_seqlets:
            return
        shuffled = int(pool[self.hits.shuffled[seed]].sum())
        n_pool = int(pool.sum())
        x = len(members)
        log_p = float(log_sf([x], [(1 + self.hits.shuffles) * n_pool], [x + shuffled], [n_pool])[0])
        oriented, strands = self._orient(members, seed)
        counts = aligned_counts(oriented, seed, st.alphabet, EXTEND)
        lo, hi = trim_range(counts, st.alphabet)
        fold = x / max(shuffled / self.hits.shuffles, 0.5)  # over the shuffles' mean count
        cand = Candidate(seed, klass, counts[lo:hi], list(members), log_p, fold)
        if self._merge_into_earlier(cand, mine, strands):
            return
        self.assigned[members] = len(self.candidates)
        self.strand[members] = strands
        self.candidates.append(cand)

    def _orient(self, members: np.ndarray, seed: str) -> tuple[list[str], np.ndarray]:
        """Each member's sequence on the strand that reads `seed`, and that strand (+1/-1)."""
        oriented, strands = [], np.ones(len(members), np.int8)
        for i, m in enumerate(members):
            seq = self.sequences[m]
            if seed not in seq and self.st.both_strands:
                seq, strands[i] = reverse_complement(seq), -1
            oriented.append(seq)
        return oriented, strands

    def _merge_into_earlier(self, cand: Candidate, mine: list, strands: np.ndarray) -> bool:
        """Merge `cand` into the earlier candidate of its class it copies, if any: its letters
        are added to the columns they share, its seqlets join that motif."""
        scored = [(similarity(c.pwm, cand.pwm, self.st.both_strands), c) for c in mine]
        best = max(scored, key=lambda sc: sc[0][0], default=None)
        if best is None or best[0][0] < REDUNDANT:
            return False
        (_, offset, strand), target = best
        counts = cand.counts[::-1, ::-1] if strand < 0 else cand.counts
        for j, row in enumerate(counts):  # candidate column j lies on the target's j + offset
            if 0 <= j + offset < len(target.counts):
                target.counts[j + offset] += row
        target.members += list(cand.members)
        target.merged.append(_consensus(cand, self.st.alphabet))
        self.assigned[cand.members] = self.candidates.index(target)
        self.strand[cand.members] = strands * strand
        return True

    def report(self) -> Discovery:
        """Test the candidates together (BH) and keep those that pass, in discovery order."""
        st, cands = self.st, self.candidates
        log_q = bh_log_q(np.array([c.log_p for c in cands], np.float64))
        if len(cands) and self.hypotheses > len(cands):  # the other k-mers: p = 1, ranked last
            log_q = np.minimum(log_q + math.log(self.hypotheses / len(cands)), 0.0)
        uniq, n_seqlets = np.unique(self.classes, return_counts=True)
        totals = dict(zip(uniq.tolist(), n_seqlets.tolist(), strict=True))
        motifs, rejected, new_index = [], [], np.full(len(cands) + 1, -1, np.int64)
        for i, (c, lq) in enumerate(zip(cands, log_q, strict=True)):
            share = len(c.members) / max(totals.get(c.klass, 0), 1)
            reason = _rejection(c, lq, share, st)
            if reason is None and len(motifs) < st.top_motifs:
                new_index[i] = len(motifs)
                motifs.append(_motif(c, len(motifs), share, lq, st.alphabet))
            elif len(rejected) < REJECTED_LISTED:
                rejected.append(_rejected(c, share, lq, reason or "top_motifs", st.alphabet))
        motif_of = new_index[self.assigned]  # -1 indexes the trailing -1
        strand_of = np.where(motif_of >= 0, self.strand, 0).astype(np.int8)
        return Discovery(motifs, motif_of, strand_of, rejected)


def _hypotheses(motif_stats: pa.Table) -> int:
    """k-mers that were tested (a p-value) and so could have seeded a motif."""
    if "log10_p" not in motif_stats.column_names:
        return motif_stats.num_rows
    untested = pc.sum(pc.is_nan(motif_stats.column("log10_p"))).as_py() or 0
    return motif_stats.num_rows - untested


def _rejection(c: Candidate, log_q: float, share: float, st: StatsSettings) -> str | None:
    if not log_q < math.log(st.motif_alpha) or c.fold < MIN_FOLD:
        return "shuffled"  # about as frequent in the seqlets' own shuffles
    if share < st.min_motif_share:
        return "share"
    return None


def _consensus(c: Candidate, alphabet: str) -> str:
    return "".join(ALPHABETS[alphabet][j] for j in c.pwm.argmax(axis=1))


def _motif(c: Candidate, index: int, share: float, log_q: float, alphabet: str) -> Motif:
    return Motif(
        name=f"raysattr_{index + 1}",
        consensus=_consensus(c, alphabet),
        seed=c.seed,
        klass=c.klass,
        pwm=c.pwm,
        nsites=len(c.members),
        evalue=math.exp(log_q),
        share=share,
        log10_p=c.log_p / LN10,
        log10_q=log_q / LN10,
        fold=c.fold,
        merged=list(c.merged),
    )


def _rejected(c: Candidate, share: float, log_q: float, reason: str, alphabet: str) -> dict:
    return {
        "consensus": _consensus(c, alphabet),
        "seed": c.seed,
        "class": c.klass,
        "nsites": len(c.members),
        "share": share,
        "fold": c.fold,
        "q": math.exp(log_q),
        "reason": reason,
    }
