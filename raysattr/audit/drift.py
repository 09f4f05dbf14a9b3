"""Compare two audit folders: is the change between them larger than sampling alone would make
at these row counts?

Checks (each a family of tests, `checks.verdict`): what the model relies on (`motif_support`,
`motif_seqlets`, `position_profile`: `reliance`), what it predicts (`prediction_shift`,
`label_shift`), how well attributions converged (`delta_shift`) and how many rows failed
(`error_rate_increase`). Each gives its change, interval, p-value and threshold in one unit;
a check fails when a change is both significant (p < `alpha` after Bonferroni over its tests)
and at least its threshold. With seven checks at `alpha` each, an unchanged snapshot fails one
with probability at most 7 * alpha (`benchmarks/audit.py` measures the real rate).

The two sides hold disjoint rows: in a full audit the previous snapshot and this one (rows they
share only make the tests conservative); in an incremental audit the previous snapshot and the
rows this audit added (`samples.added_rows`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from raysattr.audit.checks import class_shift, delta_shift, error_rate
from raysattr.audit.reliance import motif_checks, position_profile
from raysattr.audit.samples import Sample, Totals, added_rows, read_sample
from raysattr.config import DriftThresholds


def top_motifs(motif_stats: pa.Table | None, k: int) -> list[str]:
    """The `k` best significant k-mers as `"<motif>|class=<c>"`, best first."""
    if motif_stats is None or motif_stats.num_rows == 0:
        return []
    sig = motif_stats.filter(pc.fill_null(motif_stats["significant"], False))
    if "rank" in sig.schema.names:
        sig = sig.sort_by("rank")
    sig = sig.slice(0, k)
    return [
        f"{m}|class={c}"
        for m, c in zip(sig["motif"].to_pylist(), sig["class"].to_pylist(), strict=True)
    ]


def run_checks(before: Sample, after: Sample, top_k: int, t: DriftThresholds) -> dict:
    """Every check of `after` against `before` (disjoint rows), and the k-mers that changed."""
    motifs, findings = motif_checks(
        before, after, top_k, t.motif_support_change, t.motif_seqlet_change, t.alpha
    )
    checks = [
        *motifs,
        position_profile(before, after, t.position_change, t.alpha),
        class_shift("prediction_shift", "pred", before, after, t.pred_shift, t.alpha),
        class_shift("label_shift", "label", before, after, t.label_shift, t.alpha),
        delta_shift(before, after, t.delta_shift, t.alpha),
        error_rate(before, after, t.error_rate_increase, t.alpha),
    ]
    return {
        "checks": [c.as_dict() for c in checks],
        "drift": [c.name for c in checks if not c.passed],
        "motif_changes": findings,
        "motifs_gained": [f["motif"] for f in findings if f["status"] == "gained"],
        "motifs_lost": [f["motif"] for f in findings if f["status"] == "lost"],
    }


def compare(
    now_uri: str,
    before_uri: str,
    top_k: int,
    t: DriftThresholds,
    totals: tuple[Totals, Totals],
    incremental: bool = False,
) -> dict:
    """Every drift check of the audit `now_uri` against the audit `before_uri`.

    Args:
        top_k: significant k-mers of each side tested.
        totals: the snapshot totals (rows, error rows, delta histogram) of now and before.
        incremental: `now_uri`'s statistics are `before_uri`'s merged with new rows: compare
            those rows with the previous snapshot.

    Returns:
        audit.json's comparison keys: `comparison`, `rows_compared`, `checks`, `drift`,
        `motif_changes`, `motifs_gained`, `motifs_lost`, `top_motifs`.
    """
    now, before = read_sample(now_uri, totals[0]), read_sample(before_uri, totals[1])
    after = added_rows(now, before) if incremental else now
    result = run_checks(before, after, top_k, t)
    comparison = "new rows vs previous snapshot" if incremental else "snapshot vs previous"
    return {
        "comparison": comparison,
        "rows_compared": {"before": before.totals.rows, "after": after.totals.rows},
        **result,
        "top_motifs": top_motifs(now.motifs, top_k),
    }


def describe(check: dict) -> str:
    """One line for a check: change [interval] unit (where), p-value, threshold, alpha."""
    if check.get("change") is None:
        return f"{check['name']}: {check.get('detail', '')}"
    low, high = check["interval"]
    return (
        f"{check['name']}: {check['change']:+.4g} [{low:+.4g}, {high:+.4g}] {check['unit']} "
        f"({check['where']}), p={check['p_value']:.3g}; threshold {check['threshold']:g}, "
        f"alpha {check['alpha']:g}: {check['detail']}"
    )
