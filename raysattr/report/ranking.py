"""One streaming pass over `attributions/` for the report: counts, delta histogram, and the
top and bottom rows by score sum; then a second, filtered read of only those rows' lists.

The score sum of a row is the sum of its `residue_attr` (Captum's "attribution score", on the
residue level the page colours). It is computed batch by batch and only the running top and
bottom `n` keys are kept, so memory does not grow with the number of rows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.io.results import attributions_dataset
from raysattr.pipeline.summary import DELTA_EDGES

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


class _Extremes:
    """The `n` largest scores seen so far, with their (id, target) keys."""

    def __init__(self, n: int):
        self.n = n
        self.scores = np.zeros(0, np.float64)
        self.keys: list[tuple[str, int]] = []

    def update(self, scores: np.ndarray, keys: list[tuple[str, int]]) -> None:
        scores = np.concatenate([self.scores, scores])
        keys = self.keys + keys
        if len(scores) > self.n:
            keep = np.argpartition(-scores, self.n - 1)[: self.n]
            scores, keys = scores[keep], [keys[i] for i in keep]
        order = np.argsort(-scores, kind="stable")
        self.scores, self.keys = scores[order], [keys[i] for i in order]


@dataclass
class Scan:
    """What one pass over `attributions/` found."""

    rows: int = 0
    status: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    fingerprints: Counter = field(default_factory=Counter)
    delta_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(DELTA_EDGES) - 1, np.int64))
    delta_rel_max: float = 0.0
    score_sum_total: float = 0.0
    top: list[tuple[str, int, float]] = field(default_factory=list)  # (id, target, score sum)
    bottom: list[tuple[str, int, float]] = field(default_factory=list)


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
    """Stream the scalar columns (and `residue_attr`, reduced per batch to one sum a row).

    Args:
        output_uri: run directory (local or s3://).
        top_n: rows kept at each end of the score-sum ranking (ok rows only).
        batch_rows: rows per batch read.

    Raises:
        ValueError: `attributions/` holds no part file, or lacks a needed column.
    """
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        raise ValueError(f"no attributions/part-*.parquet under {output_uri}: run `raysattr run`")
    missing = {"id", "target", "status", "residue_attr"} - set(dataset.schema.names)
    if missing:
        raise ValueError(f"attributions/ in {output_uri} lacks columns {sorted(missing)}")
    columns = [c for c in SCAN_COLUMNS if c in dataset.schema.names]
    scan, high, low = Scan(), _Extremes(top_n), _Extremes(top_n)
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        _scan_batch(scan, pa.Table.from_batches([batch]), high, low)
    scan.top = [(k[0], k[1], float(s)) for k, s in zip(high.keys, high.scores, strict=True)]
    scan.bottom = [(k[0], k[1], float(-s)) for k, s in zip(low.keys, low.scores, strict=True)]
    return scan


def _scan_batch(scan: Scan, table: pa.Table, high: _Extremes, low: _Extremes) -> None:
    scan.rows += table.num_rows
    status = table.column("status").to_pylist()
    scan.status.update(status)
    for name, counter in (("method", scan.methods), ("model_fingerprint", scan.fingerprints)):
        if name in table.column_names:
            counter.update(v for v in table.column(name).to_pylist() if v is not None)
    if "delta_rel" in table.column_names:
        rel = table.column("delta_rel").to_numpy(zero_copy_only=False).astype(np.float64)
        rel = np.abs(rel[np.isfinite(rel)])
        scan.delta_hist += np.histogram(rel, bins=DELTA_EDGES)[0]
        scan.delta_rel_max = max(scan.delta_rel_max, float(rel.max(initial=0.0)))
    ok = np.array([s == "ok" for s in status], bool)
    ok &= table.column("residue_attr").is_valid().to_numpy(zero_copy_only=False)
    if not ok.any():
        return
    picked = table.filter(pa.array(ok))
    sums = row_score_sums(picked.column("residue_attr"))
    scan.score_sum_total += float(sums.sum())
    keys = list(
        zip(picked.column("id").to_pylist(), picked.column("target").to_pylist(), strict=True)
    )
    high.update(sums, keys)
    low.update(-sums, keys)


def fetch_rows(output_uri: str, keys: list[tuple[str, int]]) -> list[dict]:
    """Read only the rows named by `(id, target)` keys, with their lists, in the order given.

    A filtered scan: row groups are read a batch at a time and only matching rows are kept.
    """
    if not keys:
        return []
    dataset = attributions_dataset(output_uri)
    columns = [c for c in ROW_COLUMNS if c in dataset.schema.names]
    ids = pa.array(sorted({k[0] for k in keys}), pa.string())
    table = dataset.to_table(columns=columns, filter=pc.field("id").isin(ids))
    found: dict[tuple[str, int], dict] = {}
    for row in table.to_pylist():
        found.setdefault((row["id"], row["target"]), row)
    return [found[k] for k in keys if k in found]


def probability(row: dict, cls: int | None) -> float:
    """`probs[cls]` of a row, NaN when absent."""
    probs = row.get("probs") or []
    if cls is None or not 0 <= cls < len(probs):
        return math.nan
    return float(probs[cls])
