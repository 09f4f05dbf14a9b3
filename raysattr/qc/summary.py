"""What `qc.json` says: AOPC contrasts against the random order (overall and per target class),
the mean curves, the baseline sanity check and whether the model is the one that wrote the
attributions (keys in `raysattr.qc`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.attribution import AttributionEngine
from raysattr.models import LoadedModel
from raysattr.qc.curves import ORDERS
from raysattr.tokenize import TokenizedRow

WIN_MARGIN = 0.01  # a row "wins" when its attribution order beats random by this much


def summarize(table: pa.Table) -> dict:
    """AOPC comprehensiveness / sufficiency (attribution, random, difference), overall and per
    target class, the share of rows whose attribution order beats random, and the mean curves.

    Args:
        table: a `qc.parquet` table.
    """
    per_row = _per_row_aopc(table)
    by_target: dict[str, dict] = {}
    for target in sorted({key[1] for key in per_row}):
        subset = [v for key, v in per_row.items() if key[1] == target]
        by_target[str(target)] = {**_contrasts(subset), "n_rows": len(subset)}
    paired = [v for v in per_row.values() if all(o in v for o in ORDERS)]
    wins = [v["attribution"][0] > v["random"][0] + WIN_MARGIN for v in paired]
    return {
        **_contrasts(list(per_row.values())),
        "by_target": by_target,
        "comprehensiveness_win_rate": float(np.mean(wins)) if wins else None,
        "curves": _curves(table),
        "mean_p_full": _mean(table["p_full"].to_numpy()),
        "mean_p_baseline": _mean(table["p_baseline"].to_numpy()),
    }


def _per_row_aopc(table: pa.Table) -> dict:
    """`{(id, target): {order: (comprehensiveness, sufficiency)}}`, each a mean over fractions."""
    scores = (
        table.select(["id", "target", "order"])
        .append_column("comp", pc.subtract(table["p_full"], table["p_deleted"]))
        .append_column("suff", pc.subtract(table["p_full"], table["p_inserted"]))
    )
    grouped = scores.group_by(["id", "target", "order"]).aggregate(
        [("comp", "mean"), ("suff", "mean")]
    )
    per_row: dict = {}
    for r in grouped.to_pylist():
        per_row.setdefault((r["id"], r["target"]), {})[r["order"]] = (
            r["comp_mean"],
            r["suff_mean"],
        )
    return per_row


def _contrasts(per_row: list[dict]) -> dict:
    out = {}
    for index, name in ((0, "aopc_comprehensiveness"), (1, "aopc_sufficiency")):
        means = {o: _mean([v[o][index] for v in per_row if o in v]) for o in ORDERS}
        both = means["attribution"] is not None and means["random"] is not None
        means["difference"] = means["attribution"] - means["random"] if both else None
        out[name] = means
    return out


def _curves(table: pa.Table) -> dict:
    grouped = table.group_by(["order", "fraction"]).aggregate(
        [("p_deleted", "mean"), ("p_inserted", "mean")]
    )
    records = sorted(grouped.to_pylist(), key=lambda r: r["fraction"])
    fractions = sorted({r["fraction"] for r in records})
    curves: dict = {"fractions": fractions, "deletion": {}, "insertion": {}}
    for order in ORDERS:
        mine = [r for r in records if r["order"] == order]
        curves["deletion"][order] = [r["p_deleted_mean"] for r in mine]
        curves["insertion"][order] = [r["p_inserted_mean"] for r in mine]
    return curves


def _mean(values) -> float | None:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if len(values) else None


def baseline_sanity(engine: AttributionEngine, rows: pa.Table, n_rows: int = 4) -> float | None:
    """Largest |token score| the method gives the all-baseline input of the first `n_rows` rows.

    Each row's content is replaced by the baseline token and attributed toward the row's own
    target with `engine`'s model and settings, so input == baseline: integrated-gradient methods
    must return ~0.

    Returns:
        the max |token_attr| over those rows, or None when none could be attributed.
    """
    tokenize = replace(engine.tokenize, long_policy="truncate")
    sizes = [len(ids) - 2 for ids in rows["token_ids"].to_pylist()[:n_rows]]
    targets = [int(t) for t in rows["target"].to_pylist()[:n_rows]]
    worst = None
    for target in sorted(set(targets)):
        attribution = replace(engine.attribution, adaptive_steps=False, target=f"class:{target}")
        per_target = AttributionEngine(engine.loaded, attribution, tokenize, engine.dtype)
        inputs = [
            _baseline_row(n, engine.baseline_id)
            for n, t in zip(sizes, targets, strict=True)
            if t == target
        ]
        for result in per_target.run(inputs):
            if result.ok:
                value = float(np.abs(result.token_attr).max())
                worst = value if worst is None else max(worst, value)
    return worst


def _baseline_row(n_tokens: int, baseline_id: int) -> TokenizedRow:
    starts = np.arange(n_tokens, dtype=np.int32)
    spans = np.stack([starts, starts + 1], axis=1)
    return TokenizedRow(np.full(n_tokens, baseline_id, np.int64), spans, "N" * n_tokens)


def provenance_checks(rows: pa.Table, table: pa.Table, loaded: LoadedModel, output: str) -> dict:
    """Is this the model that wrote the attributions? Stored vs re-predicted probability and the
    weights' fingerprint (None when the columns are absent or the output is a logit).

    Args:
        rows: the sampled attribution rows (`probs`, `model_fingerprint` when present).
        table: their `qc.parquet` table (`p_full` is the re-predicted score).
        loaded: the model that re-predicted them.
        output: `attribution.output` (`prob` or `logit`).
    """
    gap = None
    if output == "prob" and "probs" in rows.column_names:
        full = {(r["id"], r["target"]): r["p_full"] for r in table.to_pylist()}
        columns = (rows[c].to_pylist() for c in ("id", "target", "probs"))
        gap = max(abs(full[(i, t)] - p[t]) for i, t, p in zip(*columns, strict=True))
    match = None
    if "model_fingerprint" in rows.column_names:
        match = set(rows["model_fingerprint"].to_pylist()) == {loaded.fingerprint}
    return {"p_full_max_abs_diff": gap, "model_fingerprint_match": match}
