"""Run summary built from the per-row summaries the write stage streams back: counts by status,
delta distribution, steps, throughput. Constant memory except for the duplicate-id check."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pyarrow as pa

DELTA_EDGES = [0, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1.0, math.inf]


class RunSummary:
    """Accumulates `WriteStage` summary batches."""

    def __init__(self):
        self.status: Counter = Counter()
        self.steps: Counter = Counter()
        self.delta_hist = np.zeros(len(DELTA_EDGES) - 1, np.int64)
        self.delta_max = 0.0
        self.seen_ids: set[str] = set()
        self.duplicate_ids: list[str] = []
        self.provenance: dict = {}

    def add(self, batch: pa.Table) -> None:
        self.status.update(batch.column("status").to_pylist())
        self.steps.update(batch.column("n_steps").to_pylist())
        rel = batch.column("delta_rel").to_numpy(zero_copy_only=False)
        rel = rel[np.isfinite(rel)]
        if len(rel):
            self.delta_hist += np.histogram(rel, bins=DELTA_EDGES)[0]
            self.delta_max = max(self.delta_max, float(rel.max()))
        targets = batch.column("target").to_pylist()
        for row_id, target in zip(batch.column("id").to_pylist(), targets, strict=True):
            key = f"{row_id}\x00{target}"
            if key in self.seen_ids:
                self.duplicate_ids.append(row_id)
            self.seen_ids.add(key)
        for col in ("model_fingerprint", "run_id"):
            if col in batch.column_names and batch.num_rows:
                self.provenance[col] = batch.column(col)[0].as_py()

    def finish(self, wall_s: float, skipped_done: int, **extra) -> dict:
        out = sum(self.status.values())
        ok = self.status.get("ok", 0)
        return {
            "rows": {
                "out": out,
                "ok": ok,
                "error": out - ok,
                "error_by_code": {k: v for k, v in sorted(self.status.items()) if k != "ok"},
                "skipped_done": skipped_done,
                "duplicate_ids": sorted(set(self.duplicate_ids))[:20],
                "n_duplicate_ids": len(self.duplicate_ids),
            },
            "delta_rel": {
                "histogram_edges": [str(e) for e in DELTA_EDGES],
                "histogram": self.delta_hist.tolist(),
                "max": self.delta_max,
            },
            "n_steps": {str(k): v for k, v in sorted(self.steps.items())},
            "wall_s": wall_s,
            "sequences_per_s": out / wall_s if wall_s > 0 else 0.0,
            **self.provenance,
            **extra,
        }
