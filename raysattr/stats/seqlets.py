"""Seqlets: contiguous windows of high |attribution|, found against one dataset-wide threshold.

A residue is *hot* when the mean |score| over a centred window (`seqlet_window`) reaches the
threshold (a percentile of that smoothed |score| over the whole dataset). Runs of hot residues of
at least `seqlet_min_length` are cores; cores longer than `seqlet_max_length` are cut to that
length around their peak; `seqlet_flank` residues on each side (within the row) are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raysattr.stats.flat import FlatRows, smooth_abs

_NUMERIC = ("classes", "start", "end", "core_start", "core_end", "score", "abs_score", "peak")


@dataclass(frozen=True)
class SeqletSettings:
    threshold: float
    window: int = 5
    min_length: int = 4
    max_length: int = 30
    flank: int = 3


def find_cores(flat: FlatRows, s: SeqletSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat `[start, end)` of every core and the flat index of its peak, `[m]` each."""
    smooth = smooth_abs(flat, s.window)
    hot = smooth >= s.threshold if s.threshold > 0 else np.zeros(len(smooth), bool)
    first = flat.pos == 0
    prev_hot = np.concatenate([[False], hot[:-1]]) & ~first
    last = flat.pos == flat.lengths[flat.row_of] - 1
    next_hot = np.concatenate([hot[1:], [False]]) & ~last
    starts = np.flatnonzero(hot & ~prev_hot)
    ends = np.flatnonzero(hot & ~next_hot) + 1
    keep = ends - starts >= s.min_length
    starts, ends = starts[keep], ends[keep]
    run = np.repeat(np.arange(len(starts)), ends - starts)
    members = (
        np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
        if len(starts)
        else np.zeros(0, np.int64)
    )
    order = np.lexsort((-smooth[members], run))
    first_of_run = np.concatenate([[0], np.cumsum(ends - starts)[:-1]]) if len(starts) else []
    peaks = members[order][first_of_run] if len(starts) else np.zeros(0, np.int64)
    long = ends - starts > s.max_length
    cut = np.clip(peaks - s.max_length // 2, starts, ends - s.max_length)
    starts = np.where(long, cut, starts)
    ends = np.where(long, cut + s.max_length, ends)
    return starts.astype(np.int64), ends.astype(np.int64), peaks.astype(np.int64)


def covered_mask(flat: FlatRows, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`[total]` bool: residue lies inside some flat `[start, end)` range."""
    diff = np.zeros(len(flat.scores) + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, ends, -1)
    return np.cumsum(diff[:-1]) > 0


def with_flanks(flat: FlatRows, starts, ends, flank: int) -> tuple[np.ndarray, np.ndarray]:
    """Extend flat ranges by `flank` residues each side without leaving their row."""
    row = flat.row_of[starts]
    lo = flat.starts[row]
    hi = lo + flat.lengths[row]
    return np.maximum(lo, starts - flank), np.minimum(hi, ends + flank)


@dataclass
class SeqletStore:
    """The strongest `capacity` seqlets by |score| (ties: id, start) plus the count of all found.

    Keeping a deterministic top-k makes `+` associative: any merge order keeps the same set.
    """

    capacity: int
    n_found: int = 0
    cols: dict = field(default_factory=dict)

    @classmethod
    def of(cls, flat: FlatRows, s: SeqletSettings, capacity: int) -> tuple[SeqletStore, tuple]:
        """Seqlets of a block and their flanked flat ranges `(starts, ends)`."""
        core_a, core_b, peaks = find_cores(flat, s)
        a, b = with_flanks(flat, core_a, core_b, s.flank)
        abs_cs = np.concatenate([[0.0], np.cumsum(np.abs(flat.scores))])
        cs = np.concatenate([[0.0], np.cumsum(flat.scores)])
        row = flat.row_of[a]
        base = flat.starts[row]
        cols = {
            "ids": flat.ids[row],
            "classes": flat.classes[row],
            "rows": row,
            "start": a - base,
            "end": b - base,
            "core_start": core_a - base,
            "core_end": core_b - base,
            "score": cs[core_b] - cs[core_a],
            "abs_score": abs_cs[core_b] - abs_cs[core_a],
            "peak": peaks - base,
        }
        store = cls(capacity, len(a), cols)._top()
        rows = store.cols.pop("rows")
        store.cols["sequence"] = np.array(
            [
                flat.sequences[r][x:y]
                for r, x, y in zip(rows, store.cols["start"], store.cols["end"], strict=True)
            ],
            dtype=object,
        )
        return store, (a, b)

    def _top(self) -> SeqletStore:
        if not self.cols or len(self.cols["ids"]) <= self.capacity:
            return self
        c = self.cols
        order = np.lexsort((c["start"], c["ids"].astype(str), -c["abs_score"]))[: self.capacity]
        self.cols = {k: v[order] for k, v in c.items()}
        return self

    def __add__(self, other: SeqletStore) -> SeqletStore:
        if not self.cols:
            return SeqletStore(self.capacity, self.n_found + other.n_found, dict(other.cols))
        if not other.cols:
            return SeqletStore(self.capacity, self.n_found + other.n_found, dict(self.cols))
        cols = {k: np.concatenate([self.cols[k], other.cols[k]]) for k in self.cols}
        return SeqletStore(self.capacity, self.n_found + other.n_found, cols)._top()

    def table(
        self, motif_of: np.ndarray | None = None, strand_of: np.ndarray | None = None
    ) -> pa.Table:
        """`seqlets.parquet`, strongest first; `motif_of` `[m]` (in `sorted_cols()` order) is
        each seqlet's motif index in motifs.meme, -1 for none; `strand_of` `[m]` the strand the
        motif reads on in the seqlet (+1: as written, -1: reverse complement, 0: no motif)."""
        c = self.sorted_cols()
        n = len(c.get("ids", []))
        strands = np.zeros(n, np.int8) if strand_of is None else np.asarray(strand_of)
        if not n:
            c = {k: np.zeros(0) for k in (*_NUMERIC, "ids", "sequence")}
        ints = {
            k: pa.array(np.asarray(c[k]).astype(np.int64))
            for k in ("classes", "start", "end", "core_start", "core_end", "peak")
        }
        return pa.table(
            {
                "id": pa.array(np.asarray(c["ids"]).astype(str), pa.string()),
                "class": ints["classes"],
                **{k: ints[k] for k in ("start", "end", "core_start", "core_end")},
                "sequence": pa.array(list(c["sequence"]), pa.string()),
                "score": pa.array(np.asarray(c["score"], np.float64)),
                "abs_score": pa.array(np.asarray(c["abs_score"], np.float64)),
                "peak": ints["peak"],
                "motif": pa.array(
                    np.full(n, -1, np.int64) if motif_of is None else np.asarray(motif_of, np.int64)
                ),
                "strand": pa.array(np.array([".", "+", "-"])[strands].tolist(), pa.string()),
            }
        )

    def sorted_cols(self) -> dict:
        """Columns in the order `table()` writes them (strongest first)."""
        if not self.cols or not len(self.cols["ids"]):
            return {}
        c = self.cols
        order = np.lexsort((c["start"], c["ids"].astype(str), -c["abs_score"]))
        return {k: v[order] for k, v in c.items()}
