"""The drift checks, each a family of tests between two samples of rows (`before`, `after`).

A test fires when its change is significant (Bonferroni-corrected p < `alpha`) *and* at least the
check's threshold, in the change's own unit; a check fails (drift) when any of its tests fires.
Each check reports one estimate: the test that fired with the smallest p-value, else the one
closest to firing, with its interval, p-value and threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from raysattr.attribution.results import DELTA_EDGES
from raysattr.audit.inference import Estimate, proportions
from raysattr.audit.samples import Sample


@dataclass
class Check:
    """One check's verdict (an entry of audit.json's `checks`)."""

    name: str
    unit: str
    threshold: float
    alpha: float
    tests: int
    estimate: Estimate | None
    passed: bool
    detail: str
    fired: list[Estimate] = field(default_factory=list)

    def as_dict(self) -> dict:
        e = self.estimate
        return {
            "name": self.name,
            "passed": self.passed,
            "change": None if e is None else e.change,
            "interval": None if e is None else [e.low, e.high],
            "p_value": None if e is None else e.p_value,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "unit": self.unit,
            "where": None if e is None else e.where,
            "tests": self.tests,
            "detail": self.detail,
            "fired": [asdict(f) for f in self.fired],
        }


def fires(e: Estimate, threshold: float, alpha: float, sides: int = 2) -> bool:
    """Significant and at least `threshold` (an increase only, when `sides` is 1)."""
    size = e.change if sides == 1 else abs(e.change)
    return e.p_value < alpha and size >= threshold


def verdict(
    name: str,
    unit: str,
    estimates: list[Estimate],
    threshold: float,
    alpha: float,
    detail: str = "",
    sides: int = 2,
) -> Check:
    """The check over `estimates` (tests of one family); no estimate = nothing to compare."""
    if not estimates:
        return Check(name, unit, threshold, alpha, 0, None, True, detail or "nothing to compare")
    fired = sorted(
        (e for e in estimates if fires(e, threshold, alpha, sides)),
        key=lambda e: (e.p_value, -abs(e.change)),
    )
    shown = fired[0] if fired else min(estimates, key=lambda e: (e.p_value, -abs(e.change)))
    text = (
        f"{shown.where}: {shown.before:.4g} (n={shown.n_before}) -> {shown.after:.4g} "
        f"(n={shown.n_after})"
    )
    if fired:
        text += f"; {len(fired)} of {len(estimates)} tests fired"
    return Check(
        name, unit, threshold, alpha, len(estimates), shown, not fired,
        f"{text}; {detail}" if detail else text, fired,
    )  # fmt: skip


def class_shift(name: str, group: str, before: Sample, after: Sample, threshold, alpha) -> Check:
    """Share of rows per class of `group` (`pred` / `label`)."""
    a, b = before.classes.get(group) or {}, after.classes.get(group) or {}
    n1, n2 = sum(a.values()), sum(b.values())
    unit = f"share of rows per {group}"
    if n1 == 0 or n2 == 0:
        return verdict(name, unit, [], threshold, alpha, f"no {group} on one side")
    classes = sorted(set(a) | set(b))
    if len(classes) == 2:  # the two shares move together: one test
        classes = classes[1:]
    x1 = np.array([a.get(c, 0) for c in classes])
    x2 = np.array([b.get(c, 0) for c in classes])
    wheres = [f"{group} {c}" for c in classes]
    estimates = proportions(wheres, x1, n1 + 0 * x1, x2, n2 + 0 * x2, alpha, len(classes))
    return verdict(name, unit, estimates, threshold, alpha)


def error_rate(before: Sample, after: Sample, threshold: float, alpha: float) -> Check:
    """Share of error rows, one-sided: only an increase is drift."""
    t1, t2 = before.totals, after.totals
    name, unit = "error_rate_increase", "share of rows that are error rows"
    if t1.rows == 0 or t2.rows == 0:
        return verdict(name, unit, [], threshold, alpha, "no rows on one side")
    est = proportions(["error rows"], [t1.errors], [t1.rows], [t2.errors], [t2.rows], alpha, 1, 1)
    return verdict(name, unit, est, threshold, alpha, sides=1)


def delta_shift(before: Sample, after: Sample, threshold: float, alpha: float) -> Check:
    """Share of rows whose `delta_rel` is at least each edge of the histogram."""
    h1 = np.asarray(before.totals.delta_hist, np.int64)
    h2 = np.asarray(after.totals.delta_hist, np.int64)
    name, unit = "delta_shift", "share of rows with delta_rel >= edge"
    if len(h1) != len(h2) or h1.sum() == 0 or h2.sum() == 0:
        return verdict(name, unit, [], threshold, alpha, "no finite delta_rel on one side")
    at_least1, at_least2 = np.cumsum(h1[::-1])[::-1], np.cumsum(h2[::-1])[::-1]
    n1, n2 = h1.sum(), h2.sum()
    edges = [i for i in range(1, len(h1)) if 0 < at_least1[i] + at_least2[i] < n1 + n2]
    if not edges:
        return verdict(name, unit, [], threshold, alpha, "every delta_rel in one bin on both sides")
    wheres = [f"delta_rel >= {DELTA_EDGES[i]:g}" for i in edges]
    x1, x2 = at_least1[edges], at_least2[edges]
    estimates = proportions(wheres, x1, n1 + 0 * x1, x2, n2 + 0 * x2, alpha, len(edges))
    return verdict(name, unit, estimates, threshold, alpha)
