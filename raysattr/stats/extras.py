"""Summaries of method extras across rows: attention-vs-attribution agreement (`extra_agree_*`
columns of the `attention` method) and layer conductance (`extra_layer_attr`, layers x tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.stats.moments import Moments, merge_dicts

HIST_BINS = 20
LAYER_COLUMN = "extra_layer_attr"


def _groups(table: pa.Table) -> list[tuple[str, int, np.ndarray]]:
    """(group, value, row mask) for all rows and each label / pred value."""
    out = [("all", -1, np.ones(table.num_rows, bool))]
    for kind in ("label", "pred"):
        if kind not in table.column_names:
            continue
        values = pc.fill_null(table.column(kind).cast(pa.int64()), -1).to_numpy()
        out += [(kind, int(v), values == v) for v in np.unique(values) if v >= 0]
    return out


@dataclass
class AgreementStats:
    """`{(metric, group, value): (Moments, min, max, hist[20])}` over the rows' agreement values."""

    cells: dict = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table) -> AgreementStats:
        cells = {}
        metrics = [c for c in table.column_names if c.startswith("extra_agree_")]
        groups = _groups(table)
        for metric in metrics:
            values = table.column(metric).cast(pa.float64()).to_numpy(zero_copy_only=False)
            for kind, value, mask in groups:
                v = values[mask & np.isfinite(values)]
                if len(v):
                    cells[(metric[len("extra_") :], kind, value)] = _Summary.of(v)
        return cls(cells)

    def __add__(self, other: AgreementStats) -> AgreementStats:
        return AgreementStats(merge_dicts(self.cells, other.cells))

    def table(self) -> pa.Table | None:
        if not self.cells:
            return None
        rows = [(k, s) for k, s in sorted(self.cells.items())]
        m = [s.moments for _, s in rows]
        return pa.table(
            {
                "metric": [k[0] for k, _ in rows],
                "group": [k[1] for k, _ in rows],
                "group_value": pa.array([k[2] for k, _ in rows], pa.int64()),
                "count": pa.array([int(x.count[0]) for x in m], pa.int64()),
                "mean": [float(x.mean[0]) for x in m],
                "std": [float(x.std()[0]) for x in m],
                "min": [s.lo for _, s in rows],
                "max": [s.hi for _, s in rows],
                "hist": pa.array([s.hist.tolist() for _, s in rows], pa.list_(pa.int64())),
            }
        )


@dataclass
class _Summary:
    moments: Moments
    lo: float
    hi: float
    hist: np.ndarray

    @classmethod
    def of(cls, v: np.ndarray) -> _Summary:
        hist = np.histogram(np.clip(v, -1, 1), bins=HIST_BINS, range=(-1, 1))[0]
        return cls(
            Moments.of(np.zeros(len(v), np.int64), v),
            float(v.min()),
            float(v.max()),
            hist.astype(np.int64),
        )

    def __add__(self, other: _Summary) -> _Summary:
        return _Summary(
            self.moments + other.moments,
            min(self.lo, other.lo),
            max(self.hi, other.hi),
            self.hist + other.hist,
        )


@dataclass
class LayerStats:
    """`{(group, value, layer): Moments over relative-position bins}` of layer conductance."""

    n_bins: int
    cells: dict = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table, n_bins: int) -> LayerStats:
        if LAYER_COLUMN not in table.column_names:
            return cls(n_bins)
        col = table.column(LAYER_COLUMN).to_pylist()
        cells: dict = {}
        for kind, value, mask in _groups(table):
            per_layer: dict[int, list] = {}
            for matrix in (col[i] for i in np.flatnonzero(mask)):
                for layer, scores in enumerate(matrix or []):
                    s = np.asarray(scores, np.float64)
                    bins = np.arange(len(s)) * n_bins // max(len(s), 1)
                    per_layer.setdefault(layer, []).append((bins, s))
            for layer, parts in per_layer.items():
                bins = np.concatenate([b for b, _ in parts])
                scores = np.concatenate([s for _, s in parts])
                cells[(kind, value, layer)] = Moments.of(bins, scores)
        return cls(n_bins, cells)

    def __add__(self, other: LayerStats) -> LayerStats:
        return LayerStats(self.n_bins, merge_dicts(self.cells, other.cells))

    def table(self) -> pa.Table | None:
        if not self.cells:
            return None
        cols: dict[str, list] = {
            k: [] for k in ("group", "group_value", "layer", "bin", "count", "mean", "mean_abs")
        }
        for (kind, value, layer), m in sorted(self.cells.items()):
            for b in np.flatnonzero(m.count > 0):
                cols["group"].append(kind)
                cols["group_value"].append(value)
                cols["layer"].append(layer)
                cols["bin"].append(int(b))
                cols["count"].append(int(m.count[b]))
                cols["mean"].append(float(m.mean[b]))
                cols["mean_abs"].append(float(m.mean_abs()[b]))
        return pa.table(
            {
                k: pa.array(
                    v, pa.int64() if k in ("group_value", "layer", "bin", "count") else None
                )
                for k, v in cols.items()
            }
        )
