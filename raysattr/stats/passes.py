"""Dataset-wide statistics over an `attributions/` folder in two streaming passes.

The statistics are the entries of `raysattr.stats.accumulators.ACCUMULATORS`. Pass 1 (per batch,
merged) builds the entries of pass 1: position statistics, the histogram of smoothed |score| that
fixes the seqlet threshold, agreement and layer summaries. Pass 2 (per batch, merged, with that
threshold) builds those of pass 2: k-mer counts inside/outside seqlets, the strongest seqlets,
letter background, rows per class. No step holds more than one batch of rows; partials merge
with `+` in any order. How batches are mapped (a loop here, Ray tasks in
`raysattr.pipeline.tasks`) is the caller's choice: `stats.run.compute_statistics(..., map_fn=...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raysattr.io.rundir import RunDir
from raysattr.stats.accumulators import (
    ACCUMULATORS,
    STATE_VERSION,
    THRESHOLD_FROM,
    Accumulator,
    Batch,
    state_version,
)
from raysattr.stats.flat import BASE_COLUMNS, flatten
from raysattr.stats.settings import StatsSettings

log = logging.getLogger("raysattr")


@dataclass
class Partial:
    """One pass's partials of a group of rows, by accumulator name (`partial.positions`, ...);
    `+` merges them name by name."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})  # absent while unpickling
        if name in values:
            return values[name]
        raise AttributeError(f"no statistic {name!r} in this partial (has {', '.join(values)})")

    def __add__(self, other: Partial) -> Partial:
        if self.values.keys() != other.values.keys():
            raise ValueError(
                f"cannot merge partials of {sorted(self.values)} and {sorted(other.values)}"
            )
        return Partial({name: value + other.values[name] for name, value in self.values.items()})


def of_pass(accumulators: Sequence[Accumulator], pass_no: int) -> list[Accumulator]:
    return [a for a in accumulators if a.pass_no == pass_no]


def batch_partial(
    table: pa.Table,
    st: StatsSettings,
    threshold: float | None = None,
    accumulators: Sequence[Accumulator] = ACCUMULATORS,
) -> Partial:
    """Partial of one batch of attribution rows: the pass-1 entries when `threshold` is None,
    else the pass-2 entries with seqlets cut at `threshold` (smoothed |score|)."""
    batch = Batch(table, flatten(table, st.class_by, st.exclude_unconverged), st, threshold)
    entries = of_pass(accumulators, 1 if threshold is None else 2)
    return Partial({a.name: a.build(batch) for a in entries})


def first_pass(
    table: pa.Table, st: StatsSettings, accumulators: Sequence[Accumulator] = ACCUMULATORS
) -> Partial:
    """Pass-1 partial of one batch of attribution rows."""
    return batch_partial(table, st, None, accumulators)


def second_pass(
    table: pa.Table,
    st: StatsSettings,
    threshold: float,
    accumulators: Sequence[Accumulator] = ACCUMULATORS,
) -> Partial:
    """Pass-2 partial of one batch, seqlets cut at `threshold` (smoothed |score|)."""
    return batch_partial(table, st, threshold, accumulators)


READ_ROWS = 256  # rows read at a time while a batch is assembled up to its bounds


def file_batches(
    path: str,
    output_uri: str,
    rows_per_batch: int,
    extra: tuple[str, ...] = (),
    residues_per_batch: int | None = None,
) -> Iterator[pa.Table]:
    """Batches of one part file with `BASE_COLUMNS` and the columns starting with an `extra`
    prefix (those the accumulators of a pass ask for), each at most `rows_per_batch` rows and
    `residues_per_batch` residues (a longer row is a batch of its own): memory follows
    residues, not rows."""
    limit = residues_per_batch or float("inf")
    with RunDir(output_uri).fs.open(path, "rb") as handle:
        pf = pq.ParquetFile(handle)
        names = pf.schema_arrow.names
        wanted = [c for c in BASE_COLUMNS if c in names]
        wanted += [c for c in names if c not in BASE_COLUMNS and extra and c.startswith(extra)]
        pending: list[pa.RecordBatch] = []
        rows = residues = 0
        for batch in pf.iter_batches(batch_size=min(rows_per_batch, READ_ROWS), columns=wanted):
            sizes = pc.list_value_length(batch.column("residue_attr")).fill_null(0)
            start = 0
            for i, size in enumerate(sizes.to_pylist()):
                if rows and (rows >= rows_per_batch or residues + size > limit):
                    pending.append(batch.slice(start, i - start))
                    yield pa.Table.from_batches(pending)
                    pending, rows, residues, start = [], 0, 0, i
                rows, residues = rows + 1, residues + size
            pending.append(batch.slice(start))
        if rows:
            yield pa.Table.from_batches(pending)


def files_partial(
    paths: list[str],
    output_uri: str,
    st: StatsSettings,
    threshold: float | None = None,
    accumulators: Sequence[Accumulator] = ACCUMULATORS,
) -> Partial | None:
    """Pass-1 (`threshold` None) or pass-2 partial of a group of part files (None when empty)."""
    entries = of_pass(accumulators, 1 if threshold is None else 2)
    extra = tuple(prefix for a in entries for prefix in a.columns)
    total = None
    for path in paths:
        for table in file_batches(
            path, output_uri, st.rows_per_batch, extra, st.residues_per_batch
        ):
            part = batch_partial(table, st, threshold, entries)
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
    and the settings; `files` lists the part files merged in (incremental audits add to it);
    `version` is the `state_version` of the accumulators that built it."""

    settings: StatsSettings
    threshold: float
    first: Partial | None
    second: Partial | None
    files: list[str] = field(default_factory=list)
    version: str = STATE_VERSION


def compute_state(
    output_uri: str,
    st: StatsSettings,
    map_fn: MapFn = local_map,
    files: list[str] | None = None,
    threshold: float | None = None,
    accumulators: Sequence[Accumulator] = ACCUMULATORS,
) -> StatsState:
    """Both passes over `files` (default: every part file); a given `threshold` is kept
    (incremental runs reuse the previous one so partials stay comparable)."""
    version = state_version(accumulators)
    files = RunDir(output_uri).part_files() if files is None else files
    groups = group_files(files, output_uri, 8 * st.rows_per_batch)
    first = _merge(map_fn(lambda g: files_partial(g, output_uri, st, None, accumulators), groups))
    if threshold is None:
        histogram = first.values[THRESHOLD_FROM] if first else None
        threshold = 0.0 if histogram is None else histogram.percentile(st.seqlet_percentile)
    second = _merge(
        map_fn(lambda g: files_partial(g, output_uri, st, threshold, accumulators), groups)
    )
    return StatsState(st, threshold, first, second, list(files), version)


def _merge(parts: Iterable):
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    return total


def merge_states(a: StatsState, b: StatsState) -> StatsState:
    """Union of two states over disjoint part files (same settings and threshold)."""
    if a.settings != b.settings or a.threshold != b.threshold or a.version != b.version:
        raise ValueError(
            "cannot merge statistics computed with different settings, threshold or accumulators"
        )
    return StatsState(
        a.settings,
        a.threshold,
        _merge([a.first, b.first]),
        _merge([a.second, b.second]),
        a.files + b.files,
        a.version,
    )
