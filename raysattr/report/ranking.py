"""One streaming pass over `attributions/` for the report: counts, delta histogram, and the
top and bottom rows by score sum (with their part file and row index); then a second read of
only those rows, from only the row groups that hold them.

The score sum of a row is the sum of its `residue_attr` (Captum's "attribution score", on the
residue level the page colours). It is computed batch by batch and only the running top and
bottom `n` keys are kept, so memory does not grow with the number of rows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raysattr.attribution.results import DELTA_EDGES
from raysattr.io.rundir import RunDir

REQUIRED = {"id", "target", "status", "residue_attr"}
SCAN_COLUMNS = (
    "id",
    "target",
    "status",
    "residue_attr",
    "delta_rel",
    "method",
    "model_fingerprint",
)
ROW_COLUMNS = (
    "id",
    "label",
    "pred",
    "probs",
    "target",
    "method",
    "status",
    "sequence",
    "length",
    "n_tokens",
    "residue_attr",
    "attr_l2",
    "delta",
    "delta_rel",
    "n_steps",
    "truncated",
    "windows",
)


class Ranked(NamedTuple):
    """A row picked by the ranking, and where it lies: part file and row index in that file."""

    id: str
    target: int
    score: float
    path: str
    row: int


class _Extremes:
    """The `n` largest scores seen so far, with their row references."""

    def __init__(self, n: int):
        self.n = n
        self.scores = np.zeros(0, np.float64)
        self.refs: list[tuple] = []

    def update(self, scores: np.ndarray, refs: list[tuple]) -> None:
        scores = np.concatenate([self.scores, scores])
        refs = self.refs + refs
        if len(scores) > self.n:
            keep = np.argpartition(-scores, self.n - 1)[: self.n]
            scores, refs = scores[keep], [refs[i] for i in keep]
        order = np.argsort(-scores, kind="stable")
        self.scores, self.refs = scores[order], [refs[i] for i in order]

    def ranked(self, sign: float) -> list[Ranked]:
        return [
            Ranked(ref[0], ref[1], sign * float(s), ref[2], ref[3])
            for ref, s in zip(self.refs, self.scores, strict=True)
        ]


@dataclass
class Scan:
    """What one pass over `attributions/` found."""

    rows: int = 0
    status: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    fingerprints: Counter = field(default_factory=Counter)
    delta_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(DELTA_EDGES) - 1, np.int64))
    delta_rel_max: float = 0.0
    top: list[Ranked] = field(default_factory=list)  # highest score sum first
    bottom: list[Ranked] = field(default_factory=list)  # lowest score sum first


def row_score_sums(residue_attr: pa.Array) -> np.ndarray:
    """Sum of each row's list (nulls and NaNs count as 0).

    Args:
        residue_attr: a `list<float>` array of `n` rows.

    Returns:
        `[n]` float64 sums.
    """
    if isinstance(residue_attr, pa.ChunkedArray):
        residue_attr = residue_attr.combine_chunks()
    values = pc.list_flatten(residue_attr).to_numpy(zero_copy_only=False).astype(np.float64)
    parents = pc.list_parent_indices(residue_attr).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=np.nan_to_num(values), minlength=len(residue_attr))


def scan_attributions(output_uri: str, top_n: int, batch_rows: int = 4096) -> Scan:
    """Stream the scalar columns (and `residue_attr`, reduced per batch to one sum a row),
    part file by part file, remembering where the top and bottom rows lie.

    Args:
        output_uri: run directory (local or s3://).
        top_n: rows kept at each end of the score-sum ranking (ok rows only).
        batch_rows: rows per batch read.

    Raises:
        ValueError: `attributions/` holds no part file, or lacks a needed column.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    out = RunDir(output_uri)
    paths = out.part_files()
    if not paths:
        raise ValueError(f"no attributions/part-*.parquet under {output_uri}: run `raysattr run`")
    fs = out.fs
    scan, high, low = Scan(), _Extremes(top_n), _Extremes(top_n)
    # File by file, not through a pyarrow dataset: a dataset keeps every fragment's metadata
    # (about 80 KiB a part file), so its memory grows with the number of files.
    for path in paths:
        with fs.open(path, "rb") as handle:
            part = pq.ParquetFile(handle)
            missing = REQUIRED - set(part.schema_arrow.names)
            if missing:
                raise ValueError(f"{path} lacks columns {sorted(missing)}")
            columns = [c for c in SCAN_COLUMNS if c in part.schema_arrow.names]
            offset = 0
            for batch in part.iter_batches(batch_size=batch_rows, columns=columns):
                table = pa.Table.from_batches([batch])
                _scan_batch(scan, table, path, offset, high, low)
                offset += table.num_rows
    scan.top, scan.bottom = high.ranked(1.0), low.ranked(-1.0)
    return scan


def _scan_batch(
    scan: Scan, table: pa.Table, path: str, offset: int, high: _Extremes, low: _Extremes
) -> None:
    scan.rows += table.num_rows
    for name, counter in (
        ("status", scan.status),
        ("method", scan.methods),
        ("model_fingerprint", scan.fingerprints),
    ):
        if name in table.column_names:
            counts = pc.value_counts(table.column(name).drop_null())
            values, n = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
            counter.update(dict(zip(values, n, strict=True)))
    if "delta_rel" in table.column_names:
        rel = table.column("delta_rel").to_numpy(zero_copy_only=False).astype(np.float64)
        rel = np.abs(rel[np.isfinite(rel)])
        scan.delta_hist += np.histogram(rel, bins=DELTA_EDGES)[0]
        scan.delta_rel_max = max(scan.delta_rel_max, float(rel.max(initial=0.0)))
    ok = pc.and_(pc.equal(table.column("status"), "ok"), table.column("residue_attr").is_valid())
    index = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if not len(index):
        return
    sums = row_score_sums(table.column("residue_attr").take(pa.array(index)))
    for extremes, signed in ((high, sums), (low, -sums)):
        # Only this batch's own top n can enter the running top n: build references for those.
        best = (
            np.argpartition(-signed, extremes.n - 1)[: extremes.n]
            if len(signed) > extremes.n
            else np.arange(len(signed))
        )
        rows = index[best]
        ids = table.column("id").take(pa.array(rows)).to_pylist()
        targets = table.column("target").take(pa.array(rows)).to_pylist()
        refs = [(i, t, path, offset + int(r)) for i, t, r in zip(ids, targets, rows, strict=True)]
        extremes.update(signed[best], refs)


def fetch_rows(output_uri: str, picked: list[Ranked]) -> list[dict]:
    """Read only the picked rows, with their lists, in the order given; each row dict gets its
    `score_sum`. Only the part files and row groups that hold them are read.
    """
    fs = RunDir(output_uri).fs
    by_path: dict[str, list[int]] = {}
    for ref in picked:
        by_path.setdefault(ref.path, []).append(ref.row)
    found: dict[tuple[str, int], dict] = {}
    for path, rows in by_path.items():
        with fs.open(path, "rb") as handle:
            found.update(_read_rows(pq.ParquetFile(handle), path, sorted(set(rows))))
    out = []
    for ref in picked:
        row = found.get((ref.path, ref.row))
        if row is not None:
            out.append({**row, "score_sum": ref.score})
    return out


def _read_rows(part: pq.ParquetFile, path: str, rows: list[int]) -> dict[tuple[str, int], dict]:
    """`{(path, row): row dict}` for `rows` (sorted file row indices), reading only the row
    groups that contain them."""
    starts = np.cumsum(
        [0] + [part.metadata.row_group(g).num_rows for g in range(part.num_row_groups)]
    )
    groups = sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r in rows})
    columns = [c for c in ROW_COLUMNS if c in part.schema_arrow.names]
    table = part.read_row_groups(groups, columns=columns)
    # Row r of the file is row (r - start of its group + rows of the groups read before it).
    base, local = {}, 0
    for g in groups:
        base[g], local = local, local + (starts[g + 1] - starts[g])
    index = [
        base[g] + r - starts[g]
        for r in rows
        for g in [int(np.searchsorted(starts, r, "right")) - 1]
    ]
    values = table.take(pa.array(index, pa.int64())).to_pylist()
    return {(path, r): v for r, v in zip(rows, values, strict=True)}


def probability(row: dict, cls: int | None) -> float:
    """`probs[cls]` of a row, NaN when absent."""
    probs = row.get("probs") or []
    if cls is None or not 0 <= cls < len(probs):
        return math.nan
    return float(probs[cls])
