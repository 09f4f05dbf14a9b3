"""Compare two run directories (an audit and the previous one): what the model relies on (motif
ranking, position profiles), what it predicts (prediction and label distributions), how well the
attributions converged (delta distribution), and how many rows failed.

Each check is `{name, value, threshold, passed, detail}`; a failed check is drift. Inputs are the
small files a run writes (summary.json, motif_stats.parquet, position_stats.parquet), never the
per-row attributions.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.config import DriftThresholds
from raysattr.io.rundir import SUMMARY, RunDir


def top_motifs(motif_stats: pa.Table | None, k: int) -> list[str]:
    """The `k` best significant motifs as `"<motif>|class=<c>"`, best first."""
    if motif_stats is None or motif_stats.num_rows == 0:
        return []
    sig = motif_stats.filter(motif_stats.column("significant")).slice(0, k)
    return [
        f"{m}|class={c}"
        for m, c in zip(
            sig.column("motif").to_pylist(), sig.column("class").to_pylist(), strict=True
        )
    ]


def spearman_of_ranks(now: list[str], before: list[str]) -> float:
    """Spearman correlation of the ranks of the union (absent = one past the last rank)."""
    union = sorted(set(now) | set(before))
    if len(union) < 2:
        return 1.0
    a = np.array([now.index(m) if m in now else len(now) for m in union], float)
    b = np.array([before.index(m) if m in before else len(before) for m in union], float)
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        tie = x == value
        ranks[tie] = ranks[tie].mean()
    return ranks


def group_counts(position_stats: pa.Table | None, group: str) -> dict[int, int]:
    """Rows per value of `group` (`pred` / `label`): every row has a residue at position 0."""
    if position_stats is None:
        return {}
    t = position_stats.filter(
        pc.and_(
            pc.and_(
                pc.equal(position_stats.column("group"), group),
                pc.equal(position_stats.column("axis"), "position"),
            ),
            pc.equal(position_stats.column("index"), 0),
        )
    )
    return dict(
        zip(t.column("group_value").to_pylist(), t.column("count").to_pylist(), strict=True)
    )


def total_variation(a: dict, b: dict) -> float:
    """Half the L1 distance between two count distributions (0 = same, 1 = disjoint); 0 when
    either side is empty (nothing to compare, e.g. an incremental audit with no new rows)."""
    na, nb = sum(a.values()), sum(b.values())
    if na == 0 or nb == 0:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def profiles(position_stats: pa.Table | None) -> dict[int, np.ndarray]:
    """Mean score per relative-position bin, per label value (`[bins]` each)."""
    if position_stats is None:
        return {}
    t = position_stats.filter(
        pc.and_(
            pc.equal(position_stats.column("group"), "label"),
            pc.equal(position_stats.column("axis"), "relative"),
        )
    )
    out: dict[int, np.ndarray] = {}
    for value in set(t.column("group_value").to_pylist()):
        rows = t.filter(pc.equal(t.column("group_value"), value))
        bins = np.array(rows.column("index").to_pylist())
        prof = np.zeros(int(bins.max()) + 1)
        prof[bins] = rows.column("mean").to_numpy()
        out[int(value)] = prof
    return out


def profile_distance(now: dict, before: dict) -> tuple[float, str]:
    """Largest (1 - cosine) over classes present in both runs, and the class it came from."""
    worst, where = 0.0, "no class in common"
    for c in sorted(set(now) & set(before)):
        a, b = now[c], before[c]
        n = max(len(a), len(b))
        a, b = np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        dist = 1.0 - float(a @ b / denom) if denom > 0 else 0.0
        if dist >= worst:
            worst, where = dist, f"label {c}"
    return worst, where


def delta_histogram(summary: dict | None) -> dict:
    hist = ((summary or {}).get("delta_rel") or {}).get("histogram") or []
    return dict(enumerate(hist))


def error_rate(summary: dict | None) -> float:
    rows = (summary or {}).get("rows") or {}
    return rows.get("error", 0) / rows["out"] if rows.get("out") else 0.0


def _check(name, value, threshold, passed, detail) -> dict:
    return {
        "name": name,
        "value": None if value is None or math.isnan(value) else float(value),
        "threshold": threshold,
        "passed": bool(passed),
        "detail": detail,
    }


def compare(now_uri: str, before_uri: str, top_k: int, t: DriftThresholds) -> dict:
    """Every drift check of `now_uri` against `before_uri`, plus motifs gained and lost."""
    stats_now, stats_before = (
        RunDir(u).read_parquet("motif_stats.parquet") for u in (now_uri, before_uri)
    )
    pos_now, pos_before = (
        RunDir(u).read_parquet("position_stats.parquet") for u in (now_uri, before_uri)
    )
    sum_now, sum_before = RunDir(now_uri).read_json(SUMMARY), RunDir(before_uri).read_json(SUMMARY)
    top_now, top_before = top_motifs(stats_now, top_k), top_motifs(stats_before, top_k)
    union = set(top_now) | set(top_before)
    jaccard = len(set(top_now) & set(top_before)) / len(union) if union else 1.0
    gained = [m for m in top_now if m not in top_before]
    lost = [m for m in top_before if m not in top_now]
    rank_corr = spearman_of_ranks(top_now, top_before)
    dist, where = profile_distance(profiles(pos_now), profiles(pos_before))
    pred_tv = total_variation(group_counts(pos_now, "pred"), group_counts(pos_before, "pred"))
    label_tv = total_variation(group_counts(pos_now, "label"), group_counts(pos_before, "label"))
    delta_tv = total_variation(delta_histogram(sum_now), delta_histogram(sum_before))
    err_up = error_rate(sum_now) - error_rate(sum_before)
    checks = [
        _check(
            "motif_jaccard",
            jaccard,
            t.motif_jaccard_min,
            jaccard >= t.motif_jaccard_min,
            f"top {top_k}: gained {gained[:5]}, lost {lost[:5]}",
        ),
        _check(
            "motif_rank_correlation",
            rank_corr,
            t.motif_rank_corr_min,
            rank_corr >= t.motif_rank_corr_min,
            f"Spearman over {len(union)} motifs",
        ),
        _check(
            "position_profile_distance",
            dist,
            t.position_distance_max,
            dist <= t.position_distance_max,
            f"1 - cosine, worst at {where}",
        ),
        _check(
            "prediction_shift",
            pred_tv,
            t.pred_shift_max,
            pred_tv <= t.pred_shift_max,
            "total variation of predicted classes",
        ),
        _check(
            "label_shift",
            label_tv,
            t.label_shift_max,
            label_tv <= t.label_shift_max,
            "total variation of labels",
        ),
        _check(
            "delta_shift",
            delta_tv,
            t.delta_shift_max,
            delta_tv <= t.delta_shift_max,
            "total variation of the relative-delta histogram",
        ),
        _check(
            "error_rate_increase",
            err_up,
            t.error_rate_increase_max,
            err_up <= t.error_rate_increase_max,
            f"{error_rate(sum_now):.4f} now vs {error_rate(sum_before):.4f}",
        ),
    ]
    return {
        "checks": checks,
        "drift": [c["name"] for c in checks if not c["passed"]],
        "motifs_gained": gained,
        "motifs_lost": lost,
        "top_motifs": top_now,
    }
