"""Dataset-wide statistics over an `attributions/` folder in two streaming passes.

Pass 1 (per batch, merged): position statistics, the histogram of smoothed |score| that fixes the
seqlet threshold, agreement and layer summaries. Pass 2 (per batch, merged, with that threshold):
k-mer counts inside/outside seqlets, the strongest seqlets, letter background. No step holds more
than one batch of rows; partials merge with `+` in any order. How batches are mapped (a loop here,
Ray tasks in `raysattr.pipeline.tasks`) is the caller's choice:
`stats.run.compute_statistics(..., map_fn=...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.config import StatsConfig
from raysattr.io.rundir import RunDir
from raysattr.stats.extras import LAYER_COLUMN, AgreementStats, LayerStats
from raysattr.stats.flat import (
    BASE_COLUMNS,
    DEFAULT_KMER_SIZES,
    flatten,
    smooth_abs,
)
from raysattr.stats.kmers import KmerCounts, check_key_space
from raysattr.stats.moments import merge_dicts
from raysattr.stats.positions import AbsHistogram, PositionStats
from raysattr.stats.seqlets import SeqletSettings, SeqletStore, covered_mask

log = logging.getLogger("raysattr")
STATE_VERSION = 1


@dataclass(frozen=True)
class StatsSettings:
    """`StatsConfig` with the alphabet and k-mer sizes resolved."""

    alphabet: str
    kmer_sizes: tuple[int, ...]
    class_by: str
    position_bins: int
    seqlet_percentile: float
    seqlet: SeqletSettings
    max_seqlets: int
    min_occurrences: int
    alpha: float
    top_motifs: int
    min_motif_seqlets: int
    rows_per_batch: int

    @classmethod
    def from_config(cls, cfg: StatsConfig, alphabet: str) -> StatsSettings:
        ks = tuple(cfg.kmer_sizes) or tuple(DEFAULT_KMER_SIZES[alphabet])
        check_key_space(alphabet, list(ks))
        return cls(
            alphabet,
            ks,
            cfg.class_by,
            cfg.position_bins,
            cfg.seqlet_percentile,
            SeqletSettings(
                0.0,
                cfg.seqlet_window,
                cfg.seqlet_min_length,
                cfg.seqlet_max_length,
                cfg.seqlet_flank,
            ),
            cfg.max_seqlets,
            cfg.min_occurrences,
            cfg.alpha,
            cfg.top_motifs,
            cfg.min_motif_seqlets,
            cfg.rows_per_batch,
        )


@dataclass
class FirstPass:
    """Partial of pass 1; `+` merges."""

    rows: int
    positions: PositionStats
    smoothed: AbsHistogram
    agreement: AgreementStats
    layers: LayerStats

    def __add__(self, other: FirstPass) -> FirstPass:
        return FirstPass(
            self.rows + other.rows,
            self.positions + other.positions,
            self.smoothed + other.smoothed,
            self.agreement + other.agreement,
            self.layers + other.layers,
        )


@dataclass
class SecondPass:
    """Partial of pass 2; `+` merges."""

    kmers: KmerCounts
    seqlets: SeqletStore
    letters: np.ndarray  # [A] letter counts (MEME background)
    class_rows: dict  # {class: rows}

    def __add__(self, other: SecondPass) -> SecondPass:
        size = max(len(self.letters), len(other.letters))
        letters = np.zeros(size, np.int64)
        letters[: len(self.letters)] += self.letters
        letters[: len(other.letters)] += other.letters
        return SecondPass(
            self.kmers + other.kmers,
            self.seqlets + other.seqlets,
            letters,
            merge_dicts(self.class_rows, other.class_rows),
        )


def first_pass(table: pa.Table, st: StatsSettings) -> FirstPass:
    """Pass-1 partial of one batch of attribution rows."""
    flat = flatten(table, st.class_by)
    return FirstPass(
        flat.n_rows,
        PositionStats.of(flat, st.position_bins),
        AbsHistogram.of(smooth_abs(flat, st.seqlet.window)),
        AgreementStats.of(table),
        LayerStats.of(table, st.position_bins),
    )


def second_pass(table: pa.Table, st: StatsSettings, threshold: float) -> SecondPass:
    """Pass-2 partial of one batch, seqlets cut at `threshold` (smoothed |score|)."""
    flat = flatten(table, st.class_by)
    s = replace(st.seqlet, threshold=threshold)
    store, (starts, ends) = SeqletStore.of(flat, s, st.max_seqlets)
    covered = covered_mask(flat, starts, ends)
    letters = np.zeros(0, np.int64)
    if st.alphabet != "text":
        codes = flat.codes(st.alphabet)
        letters = np.bincount(codes[codes >= 0], minlength=int(codes.max(initial=0)) + 1)
    classes, counts = np.unique(flat.classes, return_counts=True)
    return SecondPass(
        KmerCounts.of(flat, st.alphabet, list(st.kmer_sizes), covered),
        store,
        letters.astype(np.int64),
        {int(c): int(n) for c, n in zip(classes, counts, strict=True)},
    )


def file_batches(path: str, output_uri: str, rows_per_batch: int, extra: bool) -> Iterator:
    """Record batches of one part file with the columns the statistics read."""
    with RunDir(output_uri).fs.open(path, "rb") as handle:
        pf = pq.ParquetFile(handle)
        names = pf.schema_arrow.names
        wanted = [c for c in BASE_COLUMNS if c in names]
        if extra:
            wanted += [c for c in names if c.startswith("extra_agree_") or c == LAYER_COLUMN]
        for batch in pf.iter_batches(batch_size=rows_per_batch, columns=wanted):
            yield pa.Table.from_batches([batch])


def files_partial(
    paths: list[str], output_uri: str, st: StatsSettings, threshold: float | None = None
):
    """Pass-1 (`threshold` None) or pass-2 partial of a group of part files (None when empty)."""
    total = None
    for path in paths:
        for table in file_batches(path, output_uri, st.rows_per_batch, threshold is None):
            part = first_pass(table, st) if threshold is None else second_pass(table, st, threshold)
            total = part if total is None else total + part
    return total


def group_files(paths: list[str], output_uri: str, rows_per_group: int) -> list[list[str]]:
    """Consecutive part files grouped to about `rows_per_group` rows (from parquet footers)."""
    fs = RunDir(output_uri).fs
    groups: list[list[str]] = [[]]
    rows = 0
    for path in paths:
        with fs.open(path, "rb") as handle:
            n = pq.ParquetFile(handle).metadata.num_rows
        if groups[-1] and rows + n > rows_per_group:
            groups.append([])
            rows = 0
        groups[-1].append(path)
        rows += n
    return [g for g in groups if g]


MapFn = Callable[[Callable, list], Iterable]


def local_map(func: Callable, items: list) -> Iterator:
    """The in-process executor: `func(item)` for each item, lazily."""
    return (func(item) for item in items)


@dataclass
class StatsState:
    """Everything needed to finish or extend the statistics: merged partials, the threshold
    and the settings; `files` lists the part files merged in (incremental audits add to it)."""

    settings: StatsSettings
    threshold: float
    first: FirstPass | None
    second: SecondPass | None
    files: list[str] = field(default_factory=list)
    version: int = STATE_VERSION


def compute_state(
    output_uri: str,
    st: StatsSettings,
    map_fn: MapFn = local_map,
    files: list[str] | None = None,
    threshold: float | None = None,
) -> StatsState:
    """Both passes over `files` (default: every part file); a given `threshold` is kept
    (incremental runs reuse the previous one so partials stay comparable)."""
    files = RunDir(output_uri).part_files() if files is None else files
    groups = group_files(files, output_uri, 8 * st.rows_per_batch)
    first = _merge(map_fn(lambda g: files_partial(g, output_uri, st), groups))
    if threshold is None:
        threshold = first.smoothed.percentile(st.seqlet_percentile) if first else 0.0
    second = _merge(map_fn(lambda g: files_partial(g, output_uri, st, threshold), groups))
    return StatsState(st, threshold, first, second, list(files))


def _merge(parts: Iterable):
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    return total


def merge_states(a: StatsState, b: StatsState) -> StatsState:
    """Union of two states over disjoint part files (same settings and threshold)."""
    if a.settings != b.settings or a.threshold != b.threshold:
        raise ValueError("cannot merge statistics computed with different settings or threshold")
    return StatsState(
        a.settings,
        a.threshold,
        _merge([a.first, b.first]),
        _merge([a.second, b.second]),
        a.files + b.files,
    )
