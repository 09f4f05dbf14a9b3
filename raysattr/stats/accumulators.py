"""The dataset statistics as one table of accumulators, `ACCUMULATORS`.

An entry names a statistic, the pass that builds it (1: before the seqlet threshold is known,
2: with it), how to build its partial from one batch of rows (`Batch`), which extra columns it
reads, which output files it may produce and what it writes into them and into `stats.json` once
merged (`Finished`), and a version number. Partials merge with `+` in any order.

`raysattr.stats.passes` runs the entries of each pass, `raysattr.stats.run.finalize` collects
their outputs, and `STATE_VERSION` (a saved state is loaded only under the same one) is a hash of
the entries' names, passes and versions. Adding a statistic is one entry here (and its class);
bump the entry's `version` when its partial changes shape.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from raysattr.stats.database import Database, annotate
from raysattr.stats.discovery import Discovery, discover
from raysattr.stats.enrichment import motif_table
from raysattr.stats.extras import LAYER_COLUMN, AgreementStats, LayerStats
from raysattr.stats.flat import ALPHABETS, FlatRows, smooth_abs
from raysattr.stats.kmers import KmerCounts
from raysattr.stats.motifs import to_meme
from raysattr.stats.positions import AbsHistogram, PositionStats
from raysattr.stats.seqlets import SeqletStore, covered_mask
from raysattr.stats.settings import StatsSettings

THRESHOLD_FROM = "smoothed"  # the pass-1 histogram whose percentile is the seqlet threshold
TOP_MOTIFS_LISTED = 10  # significant k-mers named in stats.json


@dataclass
class Batch:
    """One batch of attribution rows as every accumulator sees it.

    Attributes:
        table: the rows as read (`flat.BASE_COLUMNS` plus the extra columns the pass's
            accumulators ask for).
        flat: the `ok` rows flattened to residues.
        settings: the statistics' settings.
        threshold: the seqlet threshold (smoothed |score|) in pass 2; None in pass 1.
    """

    table: pa.Table
    flat: FlatRows
    settings: StatsSettings
    threshold: float | None = None

    @cached_property
    def seqlets(self) -> tuple[SeqletStore, np.ndarray]:
        """The batch's seqlets cut at `threshold` and the `[total]` mask of residues inside
        one; found once, shared by the seqlet and k-mer accumulators."""
        if self.threshold is None:
            raise ValueError("seqlets need the threshold: only pass-2 accumulators can use them")
        st = self.settings
        s = replace(st.seqlet, threshold=self.threshold)
        store, (starts, ends) = SeqletStore.of(self.flat, s, st.max_seqlets)
        return store, covered_mask(self.flat, starts, ends)


@dataclass
class Finished:
    """What finalize hands each accumulator's outputs: every merged partial by name, the
    settings and threshold; results that several outputs share are computed once, on first
    use."""

    settings: StatsSettings
    threshold: float
    merged: dict[str, Any]

    @cached_property
    def motif_table(self) -> pa.Table:
        """`motif_stats.parquet`: k-mer enrichment tests, sorted by rank."""
        st = self.settings
        return motif_table(
            self.merged["kmers"],
            self.merged["class_rows"],
            st.class_by,
            st.min_occurrences,
            st.alpha,
        )

    @cached_property
    def significant(self) -> pa.Table:
        return self.motif_table.filter(self.motif_table.column("significant"))

    @cached_property
    def seqlet_cols(self) -> dict:
        return self.merged["seqlets"].sorted_cols()

    @cached_property
    def discovery(self) -> Discovery:
        """Motifs that pass the motif-level test, each kept seqlet's motif and strand; with a
        motif database, each motif's matches in it."""
        st = self.settings
        found = discover(self.seqlet_cols, self.motif_table, st)
        if st.motif_database and found.motifs:
            db = Database.load(st.motif_database, st.alphabet)
            annotate(found.motifs, db, st.both_strands, st.database_matches, st.database_alpha)
        return found


def _nothing(value: Any, done: Finished) -> dict:
    return {}


@dataclass(frozen=True)
class Accumulator:
    """One statistic.

    Attributes:
        name: its key in a pass's partial (`partial.<name>`) and in `Finished.merged`.
        pass_no: 1 (no threshold yet) or 2 (seqlet threshold known).
        build: `Batch -> partial`; partials merge with `+`, in any order.
        outputs: `(merged partial, Finished) -> {file name: pa.Table | str | dict}`.
        summary: `(merged partial, Finished) -> {stats.json key: value}`.
        files: every file `outputs` may produce (the others are removed as stale).
        columns: prefixes of the extra attribution columns it reads (beyond `BASE_COLUMNS`).
        version: bump when the partial's fields change: saved states of other versions are
            not loaded.
    """

    name: str
    pass_no: int
    build: Callable[[Batch], Any]
    outputs: Callable[[Any, Finished], dict] = _nothing
    summary: Callable[[Any, Finished], dict] = _nothing
    files: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    version: int = 1


def _class_rows(b: Batch) -> Counter:
    """Rows per class, `{class: rows}` (a `Counter`: `+` adds key-wise)."""
    classes, counts = np.unique(b.flat.classes, return_counts=True)
    return Counter({int(c): int(n) for c, n in zip(classes, counts, strict=True)})


def _letters(b: Batch) -> np.ndarray:
    """`[A]` letter counts of the alphabet (the MEME background); `[0]` for text."""
    letters = ALPHABETS[b.settings.alphabet]
    if not letters:
        return np.zeros(0, np.int64)
    codes = b.flat.codes(b.settings.alphabet)
    return np.bincount(codes[codes >= 0], minlength=len(letters)).astype(np.int64)


def _kmers(b: Batch) -> KmerCounts:
    st = b.settings
    return KmerCounts.of(b.flat, st.alphabet, list(st.kmer_sizes), b.seqlets[1], st.both_strands)


def _table_if_any(name: str) -> Callable[[Any, Finished], dict]:
    """Outputs of a statistic that writes `name` only when it holds rows (method extras)."""

    def outputs(value, done: Finished) -> dict:
        table = value.table()
        return {} if table is None else {name: table}

    return outputs


def _meme(letters: np.ndarray, done: Finished) -> dict:
    if done.settings.alphabet == "text":
        return {}
    motifs = done.discovery.motifs
    return {"motifs.meme": to_meme(motifs, done.settings.alphabet, letters.astype(float))}


def _motif_list(letters: np.ndarray, done: Finished) -> dict:
    """stats.json: every reported motif (its test, support, database matches) and the
    candidates the motif test dropped."""
    found = done.discovery
    return {
        "motifs": [
            {
                "name": m.name,
                "consensus": m.consensus,
                "seed": m.seed,
                "class": m.klass,
                "nsites": m.nsites,
                "share": m.share,
                "log10_p": m.log10_p,
                "log10_q": m.log10_q,
                "fold": m.fold,
                "merged": m.merged,
                "matches": m.matches,
            }
            for m in found.motifs
        ],
        "motifs_rejected": found.rejected,
        "both_strands": done.settings.both_strands,
        "motif_database": done.settings.motif_database,
    }


ACCUMULATORS: tuple[Accumulator, ...] = (
    Accumulator("rows", 1, lambda b: b.flat.n_rows, summary=lambda v, d: {"rows": v}),
    Accumulator(
        "positions",
        1,
        lambda b: PositionStats.of(b.flat, b.settings.position_bins),
        outputs=lambda v, d: {"position_stats.parquet": v.table()},
        files=("position_stats.parquet",),
    ),
    Accumulator(
        THRESHOLD_FROM, 1, lambda b: AbsHistogram.of(smooth_abs(b.flat, b.settings.seqlet.window))
    ),
    Accumulator(
        "agreement",
        1,
        lambda b: AgreementStats.of(b.table),
        outputs=_table_if_any("agreement_stats.parquet"),
        files=("agreement_stats.parquet",),
        columns=("extra_agree_",),
    ),
    Accumulator(
        "layers",
        1,
        lambda b: LayerStats.of(b.table, b.settings.position_bins),
        outputs=_table_if_any("layer_stats.parquet"),
        files=("layer_stats.parquet",),
        columns=(LAYER_COLUMN,),
    ),
    Accumulator("class_rows", 2, _class_rows),
    Accumulator(
        "seqlets",
        2,
        lambda b: b.seqlets[0],
        outputs=lambda v, d: {
            "seqlets.parquet": v.table(d.discovery.motif_of, d.discovery.strand_of)
        },
        summary=lambda v, d: {
            "n_seqlets": v.n_found,
            "n_seqlets_kept": len(d.seqlet_cols.get("ids", [])),
        },
        files=("seqlets.parquet",),
    ),
    Accumulator(
        "kmers",
        2,
        _kmers,
        outputs=lambda v, d: {"motif_stats.parquet": d.motif_table},
        summary=lambda v, d: {
            "n_significant": d.significant.num_rows,
            "top_motifs": d.significant.column("motif").to_pylist()[:TOP_MOTIFS_LISTED],
        },
        files=("motif_stats.parquet",),
        version=2,  # canonical k-mers (both strands) and the `forward` count
    ),
    Accumulator("letters", 2, _letters, outputs=_meme, summary=_motif_list, files=("motifs.meme",)),
)


def state_version(accumulators: Sequence[Accumulator]) -> str:
    """A hash of the entries' names, passes and versions (order does not matter): a saved state
    whose version differs was built by another table and is not loaded.

    Raises:
        ValueError: two entries share a name, or an entry's pass is not 1 or 2.
    """
    names = [a.name for a in accumulators]
    if len(set(names)) != len(names):
        raise ValueError(f"accumulator names must be unique: {names}")
    if bad := [a.name for a in accumulators if a.pass_no not in (1, 2)]:
        raise ValueError(f"accumulators {bad}: pass_no must be 1 or 2")
    entries = sorted([a.name, a.pass_no, a.version] for a in accumulators)
    return hashlib.blake2b(json.dumps(entries).encode(), digest_size=8).hexdigest()


def output_files(accumulators: Sequence[Accumulator]) -> tuple[str, ...]:
    """Every file the accumulators may produce, in table order."""
    return tuple(dict.fromkeys(f for a in accumulators for f in a.files))


STATE_VERSION = state_version(ACCUMULATORS)
