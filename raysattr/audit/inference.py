"""The tests behind the drift checks: differences of proportions and of means between two
independent groups of rows, each with a confidence interval and a p-value, corrected for the
number of tests a check makes (Bonferroni).

Proportions use Fisher's exact test (the hypergeometric tail in log space, `stats.enrichment`)
for the p-value and Newcombe's hybrid score interval (from two Wilson intervals) for the
difference, both valid at a few rows; means use a normal test on the standard errors the
statistics already store (count, mean and variance per cell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from raysattr.stats.enrichment import log_sf


@dataclass
class Estimate:
    """One tested change, `after - before`, in the unit of its check.

    Attributes:
        where: what was compared (e.g. `pred 1`, `label 1, 25-30 % of length`).
        change: the estimate.
        low, high: its interval at the check's level (1 - alpha, Bonferroni-corrected).
        p_value: of no change, Bonferroni-corrected (`min(1, tests * p)`).
        before, after: the two sides' values (shares, means) and `n_before`, `n_after` rows.
    """

    where: str
    change: float
    low: float
    high: float
    p_value: float
    before: float
    after: float
    n_before: int
    n_after: int


def z_for(alpha: float, tests: int, sides: int = 2) -> float:
    """The normal quantile of a (1 - alpha) interval over `tests` tests (Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - alpha / (sides * max(tests, 1)))


def wilson(x: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion `x / n` (`[m]` each; `n` > 0)."""
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def fisher_p(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, sides: int = 2
) -> np.ndarray:
    """Fisher's exact p-value that `x2 / n2` differs from `x1 / n1` (`sides=1`: is larger).

    Under no change, `x2` is hypergeometric: `n2` draws from `n1 + n2` rows of which `x1 + x2`
    are successes. The two-sided value doubles the smaller tail (capped at 1).
    """
    x1, n1, x2, n2 = (np.asarray(v, np.float64) for v in (x1, n1, x2, n2))
    total, hits = n1 + n2, x1 + x2
    upper = np.exp(log_sf(x2, total, hits, n2))
    if sides == 1:
        return np.minimum(upper, 1.0)
    lower = np.exp(log_sf(n2 - x2, total, total - hits, n2))  # P(X <= x2) as failures' tail
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def proportions(
    wheres: list[str],
    x1: np.ndarray,
    n1: np.ndarray,
    x2: np.ndarray,
    n2: np.ndarray,
    alpha: float,
    tests: int,
    sides: int = 2,
) -> list[Estimate]:
    """Change of a proportion `x2 / n2 - x1 / n1` per entry (`[m]` arrays, `n1, n2 > 0`).

    Args:
        wheres: `[m]` labels of the entries.
        alpha: the check's level; `tests`: how many tests share it (Bonferroni).
        sides: 2, or 1 when only an increase matters (the interval's high end is then 1).
    """
    x1, n1, x2, n2 = (np.asarray(v, np.float64) for v in (x1, n1, x2, n2))
    z = z_for(alpha, tests, sides)
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    p1, p2 = x1 / n1, x2 / n2
    low = p2 - p1 - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = p2 - p1 + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    if sides == 1:
        high = np.ones_like(high)
    p = np.minimum(1.0, fisher_p(x1, n1, x2, n2, sides) * tests)
    return [
        Estimate(
            w, float(b - a), float(lo), float(hi), float(pv), float(a), float(b), int(c), int(d)
        )
        for w, a, b, lo, hi, pv, c, d in zip(wheres, p1, p2, low, high, p, n1, n2, strict=True)
    ]


def mean_differences(
    wheres: list[str],
    before: tuple[np.ndarray, np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray, np.ndarray],
    scale: float,
    alpha: float,
    tests: int,
) -> list[Estimate]:
    """Change of a mean per entry, as a fraction of `scale` (`[m]` arrays).

    Args:
        before, after: `(mean, variance, n)` per entry: the standard error is `sqrt(var / n)`,
            so `n` is the number of independent units behind the mean (see `drift`).
        scale: the unit of the change (e.g. the largest |mean| of the profiles compared).
    """
    m1, v1, n1 = (np.asarray(v, np.float64) for v in before)
    m2, v2, n2 = (np.asarray(v, np.float64) for v in after)
    se = np.sqrt(v1 / n1 + v2 / n2)
    diff = m2 - m1
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(se > 0, np.abs(diff) / se, np.where(diff == 0, 0.0, np.inf))
    p = np.minimum(1.0, np.array([math.erfc(z / math.sqrt(2)) for z in zs]) * tests)
    half = z_for(alpha, tests) * se
    return [
        Estimate(
            w,
            float(d / scale),
            float((d - h) / scale),
            float((d + h) / scale),
            float(pv),
            float(a / scale),
            float(b / scale),
            int(c),
            int(e),
        )  # fmt: skip
        for w, d, h, pv, a, b, c, e in zip(wheres, diff, half, p, m1, m2, n1, n2, strict=True)
    ]


def significant_mean(mean: np.ndarray, var: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """`[m]` bool: the mean is distinguishable from 0 at the normal quantile `z`."""
    se = np.sqrt(np.divide(var, n, out=np.full(len(var), np.inf), where=n > 0))
    return np.abs(mean) > z * se
