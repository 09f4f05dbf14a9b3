"""Hypergeometric enrichment with Benjamini–Hochberg q-values, in log space (p-values far below
1e-308 keep their order), and the `motif_stats.parquet` table built from merged k-mer counts.

Two one-sided tests per (k, motif, class c), both P(X >= x) of a hypergeometric:
- seqlet (what the model relies on): of the k-windows of class-c rows (N), n lie inside seqlets;
  the motif occurs K times there, x of them inside seqlets;
- class (what tells the class apart, DNABERT's test): of all rows (N), n are of class c; K rows hold
  the motif, x of them of class c. Rows, not windows, so the draws are independent sequences.
A motif is `significant` when both q-values are below `alpha` and both odds ratios exceed 1
(intersection-union: the combined p is the larger one). A k-mer the model attends to everywhere
(seqlet-enriched in every class) is therefore not a finding unless it also separates the classes.
With a single class only the seqlet test applies.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from raysattr.stats.kmers import KmerCounts

LN10 = math.log(10.0)
_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _log_comb(n, k):
    return (_lgamma(n + 1.0) - _lgamma(k + 1.0) - _lgamma(n - k + 1.0)).astype(np.float64)


def log_pmf(x, N, K, n) -> np.ndarray:
    """Natural log of the hypergeometric pmf, arrays broadcast together."""
    x, N, K, n = (np.asarray(v, dtype=np.float64) for v in (x, N, K, n))
    return _log_comb(K, x) + _log_comb(N - K, n - x) - _log_comb(N, n)


def log_sf(x, N, K, n, max_terms: int = 1_000_000) -> np.ndarray:
    """Natural log of P(X >= x) for X ~ Hypergeom(N population, K successes, n draws).

    Sums pmf ratios from the nearer tail: upwards from x when x is above the mean, otherwise
    1 - P(X <= x - 1) summed downwards, so each sum starts at its largest term.
    """
    x, N, K, n = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, N, K, n)))
    out = np.zeros(x.shape)
    lo, hi = np.maximum(0, n - (N - K)), np.minimum(n, K)
    certain = x <= lo
    impossible = x > hi
    out[impossible] = -np.inf
    todo = ~certain & ~impossible
    upper = todo & (x > n * K / np.maximum(N, 1))
    if upper.any():
        i = x[upper]
        args = (N[upper], K[upper], n[upper])
        out[upper] = log_pmf(i, *args) + _tail_log_sum(i, *args, hi[upper], +1, max_terms)
    lower = todo & ~upper
    if lower.any():
        i = x[lower] - 1
        args = (N[lower], K[lower], n[lower])
        log_cdf = log_pmf(i, *args) + _tail_log_sum(i, *args, lo[lower], -1, max_terms)
        out[lower] = np.log1p(-np.minimum(np.exp(log_cdf), 1.0))
    return np.minimum(out, 0.0)


def _tail_log_sum(i, N, K, n, stop, step, max_terms) -> np.ndarray:
    """log of sum_j pmf(i + step*j) / pmf(i) for j >= 0 while within `stop`."""
    total = np.ones(len(i))
    term = np.ones(len(i))
    cur = i.copy()
    active = cur != stop
    for _ in range(max_terms):
        if not active.any():
            break
        a = np.flatnonzero(active)
        c = cur[a]
        if step > 0:
            ratio = (K[a] - c) * (n[a] - c) / ((c + 1) * (N[a] - K[a] - n[a] + c + 1))
        else:
            ratio = c * (N[a] - K[a] - n[a] + c) / ((K[a] - c + 1) * (n[a] - c + 1))
        term[a] *= ratio
        total[a] += term[a]
        cur[a] = c + step
        active[a] = (cur[a] != stop[a]) & (term[a] > 1e-17 * total[a])
    return np.log(total)


def bh_log_q(log_p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values in natural log for finite entries (NaN entries: not tested)."""
    out = np.full(len(log_p), np.nan)
    tested = np.flatnonzero(np.isfinite(log_p) | (log_p == -np.inf))
    m = len(tested)
    if m == 0:
        return out
    order = tested[np.argsort(log_p[tested], kind="stable")]
    ranks = np.arange(1, m + 1)
    log_q = log_p[order] + math.log(m) - np.log(ranks)
    log_q = np.minimum.accumulate(log_q[::-1])[::-1]
    out[order] = np.minimum(log_q, 0.0)
    return out


def odds_ratio(x, K, n, N) -> np.ndarray:
    """(x / (n - x)) / ((K - x) / (N - K - n + x)) with 0.5 added to each cell."""
    x, K, n, N = (np.asarray(v, np.float64) for v in (x, K, n, N))
    return ((x + 0.5) * (N - K - n + x + 0.5)) / ((n - x + 0.5) * (K - x + 0.5))


def _per_class_totals(classes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`[u]`: the sum of `values` over all keys of the same class as each key."""
    uniq, inv = np.unique(classes, return_inverse=True)
    return np.bincount(inv, weights=values, minlength=len(uniq))[inv]


def _per_motif_totals(motifs: list[str], values: np.ndarray) -> np.ndarray:
    """`[u]`: the sum of `values` over all classes of each key's motif."""
    uniq, inv = np.unique(np.array(motifs, dtype=object), return_inverse=True)
    return np.bincount(inv, weights=values, minlength=len(uniq))[inv]


def _bh_by_class(classes: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    out = np.full(len(log_p), np.nan)
    for c in np.unique(classes):
        m = classes == c
        out[m] = bh_log_q(log_p[m])
    return out


def _tests_for_k(counts: KmerCounts, k: int, class_rows: dict, min_occurrences: int) -> dict:
    classes, motifs = counts.decode(k)
    v = counts.tables[k].values
    occ, ins = v["occurrences"].astype(np.float64), v["in_seqlets"].astype(np.float64)
    n_win = _per_class_totals(classes, occ)
    n_in = _per_class_totals(classes, ins)
    tested = occ >= max(min_occurrences, 1)
    seq_lp = np.where(tested, log_sf(ins, n_win, occ, n_in), np.nan)
    two_classes = len(class_rows) > 1
    rows_with = v["rows_with"].astype(np.float64)
    motif_rows = _per_motif_totals(motifs, rows_with)
    n_rows = float(sum(class_rows.values()))
    rows_c = np.array([class_rows.get(int(c), 0) for c in classes], np.float64)
    cls_lp = np.where(tested & two_classes, log_sf(rows_with, n_rows, motif_rows, rows_c), np.nan)
    return {
        "k": np.full(len(motifs), k, np.int64),
        "motif": np.array(motifs, dtype=object),
        "class": classes,
        "occurrences": v["occurrences"],
        "rows_with": v["rows_with"],
        "in_seqlets": v["in_seqlets"],
        "outside_seqlets": v["occurrences"] - v["in_seqlets"],
        "score_mean": v["score_sum"] / np.maximum(occ, 1),
        "score_total": v["score_sum"],
        "abs_score_mean": v["abs_sum"] / np.maximum(occ, 1),
        "seqlet_odds": odds_ratio(ins, occ, n_in, n_win),
        "seqlet_log10_p": seq_lp / LN10,
        "seqlet_q": np.exp(_bh_by_class(classes, seq_lp)),
        "class_odds": odds_ratio(rows_with, motif_rows, rows_c, n_rows),
        "class_log10_p": cls_lp / LN10,
        "class_q": np.exp(_bh_by_class(classes, cls_lp)),
        "_two_classes": np.full(len(motifs), two_classes),
    }


def motif_table(
    counts: KmerCounts, class_rows: dict, class_source: str, min_occurrences: int, alpha: float
) -> pa.Table:
    """`motif_stats.parquet` from merged counts and rows per class, sorted by `rank`."""
    parts = [_tests_for_k(counts, k, class_rows, min_occurrences) for k in sorted(counts.tables)]
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}
    if not cols or not len(cols["k"]):
        return _empty_motif_table()
    two = cols.pop("_two_classes")
    with np.errstate(invalid="ignore"):
        log10_p = np.where(
            two, np.fmax(cols["seqlet_log10_p"], cols["class_log10_p"]), cols["seqlet_log10_p"]
        )
        q = np.where(two, np.fmax(cols["seqlet_q"], cols["class_q"]), cols["seqlet_q"])
        odds_ok = (cols["seqlet_odds"] > 1) & (~two | (cols["class_odds"] > 1))
        cols["log10_p"] = np.where(two & np.isnan(cols["class_log10_p"]), np.nan, log10_p)
        cols["q"] = np.where(two & np.isnan(cols["class_q"]), np.nan, q)
        cols["significant"] = (cols["q"] < alpha) & odds_ok
    order = np.lexsort(
        (
            cols["motif"].astype(str),
            -cols["score_mean"],
            np.nan_to_num(cols["log10_p"], nan=np.inf),
            ~cols["significant"],
        )
    )
    cols = {name: value[order] for name, value in cols.items()}
    cols["rank"] = np.arange(1, len(order) + 1, dtype=np.int64)
    cols["rank_in_class"] = _rank_within(cols["class"])
    cols["class_source"] = np.full(len(order), class_source, dtype=object)
    return pa.table({name: pa.array(cols[name], _MOTIF_TYPES.get(name)) for name in MOTIF_COLUMNS})


def _rank_within(classes: np.ndarray) -> np.ndarray:
    out = np.zeros(len(classes), np.int64)
    for c in np.unique(classes):
        m = np.flatnonzero(classes == c)
        out[m] = np.arange(1, len(m) + 1)
    return out


MOTIF_COLUMNS = [
    "rank",
    "k",
    "motif",
    "class",
    "class_source",
    "occurrences",
    "rows_with",
    "in_seqlets",
    "outside_seqlets",
    "score_mean",
    "score_total",
    "abs_score_mean",
    "seqlet_odds",
    "seqlet_log10_p",
    "seqlet_q",
    "class_odds",
    "class_log10_p",
    "class_q",
    "log10_p",
    "q",
    "significant",
    "rank_in_class",
]
_MOTIF_TYPES = {
    "motif": pa.string(),
    "class_source": pa.string(),
    "significant": pa.bool_(),
    "k": pa.int64(),
    "class": pa.int64(),
    "rank": pa.int64(),
    "rank_in_class": pa.int64(),
}


def _empty_motif_table() -> pa.Table:
    return pa.table(
        {name: pa.array([], _MOTIF_TYPES.get(name, pa.float64())) for name in MOTIF_COLUMNS}
    )
