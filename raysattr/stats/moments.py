"""Count / mean / M2 arrays that merge exactly (Chan et al.'s parallel variance)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) >= size:
        return a
    return np.concatenate([a, np.zeros(size - len(a), dtype=a.dtype)])


@dataclass
class Moments:
    """Per-cell statistics of a float series, cells indexed 0..n-1 (grows on demand).

    Attributes:
        count: `[n]` values seen per cell; mean, m2: running mean and sum of squared deviations;
        abs_sum: sum of |value|; top: how many values were flagged (e.g. in their row's top decile).
    """

    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    abs_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    top: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, cell: np.ndarray, values: np.ndarray, flagged: np.ndarray | None = None) -> Moments:
        """Moments of `values` `[m]` grouped by `cell` `[m]` (non-negative ints)."""
        size = int(cell.max()) + 1 if len(cell) else 0
        count = np.bincount(cell, minlength=size)
        total = np.bincount(cell, weights=values, minlength=size)
        mean = np.divide(total, count, out=np.zeros(size), where=count > 0)
        m2 = np.bincount(cell, weights=(values - mean[cell]) ** 2, minlength=size)
        abs_sum = np.bincount(cell, weights=np.abs(values), minlength=size)
        top = np.bincount(cell[flagged], minlength=size) if flagged is not None else count * 0
        return cls(count.astype(np.int64), mean, m2, abs_sum, top.astype(np.int64))

    def __add__(self, other: Moments) -> Moments:
        size = max(len(self.count), len(other.count))
        a = [_pad(x, size) for x in (self.count, self.mean, self.m2, self.abs_sum, self.top)]
        b = [_pad(x, size) for x in (other.count, other.mean, other.m2, other.abs_sum, other.top)]
        n = a[0] + b[0]
        safe = np.maximum(n, 1)
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / safe
        m2 = a[2] + b[2] + delta**2 * a[0] * b[0] / safe
        return Moments(n, mean, m2, a[3] + b[3], a[4] + b[4])

    def std(self) -> np.ndarray:
        """Population standard deviation per cell (0 where fewer than 2 values)."""
        return np.sqrt(
            np.divide(self.m2, self.count, out=np.zeros(len(self.m2)), where=self.count > 1)
        )

    def mean_abs(self) -> np.ndarray:
        return np.divide(
            self.abs_sum, self.count, out=np.zeros(len(self.abs_sum)), where=self.count > 0
        )

    def top_share(self) -> np.ndarray:
        return np.divide(self.top, self.count, out=np.zeros(len(self.top)), where=self.count > 0)


def merge_dicts(a: dict, b: dict) -> dict:
    """Key-wise `+` of two dicts of mergeable values (keys missing on one side are copied)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = out[key] + value if key in out else value
    return out
