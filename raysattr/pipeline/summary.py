"""Run summary built from the per-row summaries the write stage makes: counts by status, delta
distribution, steps, throughput. Constant memory: duplicate ids are found before the run
(`raysattr.io.scan`), not here.

Each write task sums its block into a `RunSummary` and streams back only that, packed in one
row (`to_table`); the driver merges them (`add` takes either form). Streaming the per-row
summaries back (~200 bytes a row) made the driver's RSS grow with the rows it received: the
pages of the object store it read them from stay mapped into the driver (and inlined ones left
its native heap larger), ~100 bytes a row (NOTES.md, "Flat driver memory").
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.attribution.results import DELTA_EDGES
from raysattr.pipeline.skipped import SKIPPED, is_carrier

WORST_ROWS = 20  # unconverged rows named in summary.json and the report
PACKED = "run_summary"  # the one column of a packed summary (`RunSummary.to_table`): JSON


class RunSummary:
    """Accumulates `WriteStage` summary batches."""

    def __init__(self):
        self.status: Counter = Counter()
        self.steps: Counter = Counter()
        self.delta_hist = np.zeros(len(DELTA_EDGES) - 1, np.int64)
        self.delta_max = 0.0
        self.rows_read = 0  # input rows that reached the output (a row gives one row per target)
        self.skipped_done = 0  # input rows the read tasks skipped as already written (`SKIPPED`)
        self.unconverged = 0  # ok rows with converged = false
        self.fp32_recomputed = 0  # rows the bf16 guard attributed again in fp32
        self.worst: list[tuple[float, str, int]] = []  # (delta_rel, id, n_steps), WORST_ROWS kept
        self.provenance: dict = {}
        self.buckets = BucketTotals()

    def add(self, batch: pa.Table) -> None:
        """Add a batch of per-row summaries (`WriteStage`'s columns) or of packed summaries
        (`to_table`, one row per write task)."""
        if PACKED in batch.column_names:
            for text in batch.column(PACKED).to_pylist():
                self.merge(RunSummary.from_state(json.loads(text)))
            return
        batch = self._count_skipped(batch)
        self.status.update(batch.column("status").to_pylist())
        self.steps.update(batch.column("n_steps").to_pylist())
        rel = batch.column("delta_rel").to_numpy(zero_copy_only=False)
        rel = rel[np.isfinite(rel)]
        if len(rel):
            self.delta_hist += np.histogram(rel, bins=DELTA_EDGES)[0]
            self.delta_max = max(self.delta_max, float(rel.max()))
        self._convergence(batch)
        # Every target of an input row comes out of the same attribution call, so counting
        # distinct positions per batch counts input rows.
        if "source_row" in batch.column_names:
            positions = zip(
                batch.column("source").to_pylist(),
                batch.column("source_row").to_pylist(),
                strict=True,
            )
            self.rows_read += len(set(positions))
        else:
            self.rows_read += len(set(batch.column("id").to_pylist()))
        self.buckets.add(batch)
        for col in ("model_fingerprint", "run_id"):
            if col in batch.column_names and batch.num_rows:
                self.provenance[col] = batch.column(col)[0].as_py()

    def merge(self, other: RunSummary) -> None:
        """Add `other`'s counts (the summary of other rows) to this one."""
        self.status.update(other.status)
        self.steps.update(other.steps)
        self.delta_hist += other.delta_hist
        self.delta_max = max(self.delta_max, other.delta_max)
        self.rows_read += other.rows_read
        self.skipped_done += other.skipped_done
        self.unconverged += other.unconverged
        self.fp32_recomputed += other.fp32_recomputed
        self.worst = sorted(self.worst + other.worst, reverse=True)[:WORST_ROWS]
        self.provenance.update(other.provenance)
        self.buckets.merge(other.buckets)

    def to_table(self) -> pa.Table:
        """This summary packed in one row (what a write task streams back): its size does not
        grow with the rows summed (at most `WORST_ROWS` ids, one entry per bucket and status)."""
        state = {
            "status": dict(self.status),
            "steps": [[k, v] for k, v in self.steps.items()],
            "delta_hist": self.delta_hist.tolist(),
            "delta_max": self.delta_max,
            "rows_read": self.rows_read,
            "skipped_done": self.skipped_done,
            "unconverged": self.unconverged,
            "fp32_recomputed": self.fp32_recomputed,
            "worst": self.worst,
            "provenance": self.provenance,
            "buckets": [[b, v.tolist()] for b, v in self.buckets.totals.items()],
        }
        return pa.table({PACKED: pa.array([json.dumps(state)], pa.string())})

    @classmethod
    def from_state(cls, state: dict) -> RunSummary:
        """The summary `to_table` packed (`state`: its JSON, decoded)."""
        out = cls()
        out.status.update(state["status"])
        out.steps.update({k: v for k, v in state["steps"]})
        out.delta_hist += np.asarray(state["delta_hist"], np.int64)
        out.delta_max = state["delta_max"]
        out.rows_read = state["rows_read"]
        out.skipped_done = state["skipped_done"]
        out.unconverged = state["unconverged"]
        out.fp32_recomputed = state["fp32_recomputed"]
        out.worst = [tuple(w) for w in state["worst"]]
        out.provenance = state["provenance"]
        out.buckets.totals = {b: np.asarray(v, np.float64) for b, v in state["buckets"]}
        return out

    def _count_skipped(self, batch: pa.Table) -> pa.Table:
        """Add the `SKIPPED` counts of `batch` to `skipped_done`: a carrier's, and a row's once
        (it repeats on each target's output row); returns `batch` without its carrier rows,
        which stand for no row read."""
        if SKIPPED not in batch.column_names:
            return batch
        carrier = is_carrier(batch)
        counts = batch.column(SKIPPED).to_numpy(zero_copy_only=False)
        self.skipped_done += int(counts[carrier].sum())
        rows = batch.filter(pa.array(~carrier)) if carrier.any() else batch
        keys = ("source", "source_row") if "source_row" in rows.column_names else ("id",)
        positions = zip(*(rows.column(k).to_pylist() for k in keys), strict=True)
        once = dict(zip(positions, rows.column(SKIPPED).to_pylist(), strict=True))
        self.skipped_done += sum(once.values())
        return rows

    def _convergence(self, batch: pa.Table) -> None:
        """Count unconverged and fp32-recomputed rows; keep the `WORST_ROWS` worst unconverged."""
        if "fp32_recomputed" in batch.column_names:
            self.fp32_recomputed += int(pc.sum(batch.column("fp32_recomputed")).as_py() or 0)
        if "converged" not in batch.column_names:
            return
        flags = batch.column("converged").to_pylist()
        bad = [i for i, ok in enumerate(flags) if ok is False]
        self.unconverged += len(bad)
        rel, ids, steps = (batch.column(c).to_pylist() for c in ("delta_rel", "id", "n_steps"))
        self.worst.extend((float(rel[i]), str(ids[i]), int(steps[i])) for i in bad)
        self.worst = sorted(self.worst, reverse=True)[:WORST_ROWS]

    def finish(
        self, wall_s: float, input_rows: int, duplicates, quarantined: list[str], **extra
    ) -> dict:
        """The summary dict (`summary.json`).

        Args:
            wall_s: the run's wall time.
            input_rows: rows in the input files (pre-flight scan): every one is `read`,
                `skipped_done` (already written, counted by the read tasks) or `beyond_limit`
                (not read because of `data.limit`, the remainder).
            duplicates: the pre-flight `InputScan` (duplicate id counts and examples).
            quarantined: unreadable part files moved aside before a resume.
            **extra: more top-level keys (provenance, config, inputs, versions).
        """
        out = sum(self.status.values())
        ok = self.status.get("ok", 0)
        return {
            "rows": {
                "input": input_rows,
                "read": self.rows_read,
                "out": out,
                "ok": ok,
                "error": out - ok,
                "error_by_code": {k: v for k, v in sorted(self.status.items()) if k != "ok"},
                "skipped_done": self.skipped_done,
                "beyond_limit": input_rows - self.rows_read - self.skipped_done,
                "duplicate_ids": list(duplicates.duplicate_examples),
                "n_duplicate_ids": duplicates.n_duplicate_ids,
                "quarantined_parts": quarantined,
            },
            "delta_rel": {
                "histogram_edges": [str(e) for e in DELTA_EDGES],
                "histogram": self.delta_hist.tolist(),
                "max": self.delta_max,
            },
            "n_steps": {str(k): v for k, v in sorted(self.steps.items())},
            "convergence": {
                "unconverged": self.unconverged,
                "fp32_recomputed": self.fp32_recomputed,
                "worst": [{"id": i, "delta_rel": r, "n_steps": n} for r, i, n in self.worst],
            },
            **self.buckets.summary(),
            "wall_s": wall_s,
            "sequences_per_s": out / wall_s if wall_s > 0 else 0.0,
            **self.provenance,
            **extra,
        }


class BucketTotals:
    """Per length bucket: output rows, engine seconds, token positions evaluated and padding,
    from the call columns `AttributeStage` adds (`pipeline.stages.CALL_COLUMNS`)."""

    FIELDS = ("rows", "engine_s", "tokens_evaluated", "tokens_padding")

    def __init__(self):
        self.totals: dict[int, np.ndarray] = {}  # bucket -> FIELDS, `[4]` float64

    def add(self, batch: pa.Table) -> None:
        if "bucket" not in batch.column_names or "_engine_s" not in batch.column_names:
            return
        buckets = batch.column("bucket").to_numpy(zero_copy_only=False)
        values = [np.ones(len(buckets))] + [
            batch.column(c).to_numpy(zero_copy_only=False)
            for c in ("_engine_s", "_tokens_evaluated", "_tokens_padding")
        ]
        for b in np.unique(buckets):
            rows = buckets == b
            add = np.array([v[rows].sum() for v in values])
            self.totals[int(b)] = self.totals.get(int(b), np.zeros(4)) + add

    def merge(self, other: BucketTotals) -> None:
        for b, add in other.totals.items():
            self.totals[b] = self.totals.get(b, np.zeros(4)) + add

    def summary(self) -> dict:
        """`padding_fraction` (padding / token positions evaluated, whole run) and
        `length_buckets` (one entry per bucket: rows, engine seconds, rows per engine-second of
        one actor, padding fraction)."""
        total = sum(self.totals.values(), np.zeros(4))
        buckets = []
        for b, (rows, secs, evaluated, padding) in sorted(self.totals.items()):
            buckets.append(
                {
                    "bucket": b,
                    "rows": int(rows),
                    "engine_s": round(float(secs), 3),
                    "rows_per_s": float(rows / secs) if secs > 0 else None,
                    "tokens_evaluated": int(evaluated),
                    "padding_fraction": _fraction(padding, evaluated),
                }
            )
        return {
            "padding_fraction": _fraction(total[3], total[2]),
            "length_buckets": buckets,
        }


def _fraction(part: float, whole: float) -> float | None:
    return float(part / whole) if whole > 0 else None
