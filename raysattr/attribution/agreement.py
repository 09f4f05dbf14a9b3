"""Agreement between an attribution and attention over the same tokens (Longformer seed)."""

from __future__ import annotations

import numpy as np

AGREEMENT_KEYS = (
    "cosine_raw",
    "cosine_norm",
    "cosine_median",
    "cosine_mean",
    "cosine_rank",
    "spearman",
    "top_overlap",
)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _ranks(x: np.ndarray) -> np.ndarray:
    return x.argsort(kind="stable").argsort(kind="stable").astype(np.float64)


def agreement_table(attr: np.ndarray, attn: np.ndarray, top_fraction: float = 0.05) -> dict:
    """Similarity of `[n_tokens]` attribution and attention vectors.

    Keys: `cosine_raw`, `cosine_norm` (min-max normalised), `cosine_median` / `cosine_mean`
    (normalised, values below the median / mean set to 0), `cosine_rank` (ranks of |attr| vs
    ranks of attention), `spearman`, `top_overlap` (share of the top 5 % tokens by |attr| that
    are also in the top 5 % by attention). NaN when there are no tokens.
    """
    if len(attr) == 0:
        return dict.fromkeys(AGREEMENT_KEYS, float("nan"))
    attr, attn = np.asarray(attr, np.float64), np.asarray(attn, np.float64)
    na, nb = _minmax(attr), _minmax(attn)
    med_a, med_b = np.where(na < np.median(na), 0, na), np.where(nb < np.median(nb), 0, nb)
    mean_a, mean_b = np.where(na < na.mean(), 0, na), np.where(nb < nb.mean(), 0, nb)
    ra, rb = _ranks(np.abs(attr)), _ranks(attn)
    k = max(1, int(np.ceil(top_fraction * len(attr))))
    top_a, top_b = set(np.argsort(-np.abs(attr))[:k]), set(np.argsort(-attn)[:k])
    spearman = float(np.corrcoef(ra, rb)[0, 1]) if len(attr) > 1 else float("nan")
    return {
        "cosine_raw": _cosine(attr, attn),
        "cosine_norm": _cosine(na, nb),
        "cosine_median": _cosine(med_a, med_b),
        "cosine_mean": _cosine(mean_a, mean_b),
        "cosine_rank": _cosine(ra, rb),
        "spearman": spearman,
        "top_overlap": len(top_a & top_b) / k,
    }
