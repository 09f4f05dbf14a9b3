"""Checks of what the model relies on: per-class position profiles and the significant k-mers.

Position profiles compare each class's mean score per relative-position bin. A row's residues
in one bin are not independent (a k-mer token spreads one score over k residues, motifs span
several), so a bin's standard error counts rows, not residues: `std / sqrt(min(residues,
rows))`, an upper bound whatever the correlation inside a row. Classes whose profile is at noise
level on both sides (no bin's mean differs from 0) are left out, and changes are measured as a
fraction of the peak |mean| of the classes that have signal, so a class of tiny scores (the
negatives of a planted-motif model) cannot drive a verdict.

Motifs are the k-mers significant on either side (the best `top_k` of each, by rank). Two
effects are compared per (k-mer, class): its support, the share of the class's rows holding it
(what the data contains), and the share of its occurrences inside seqlets (whether the model
still attends to it).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.audit.checks import Check, verdict
from raysattr.audit.inference import mean_differences, proportions, significant_mean, z_for
from raysattr.audit.samples import MOTIF_KEY, Profile, Sample


def profile_group(before: Sample, after: Sample) -> str:
    """`label` when both sides have labels, else `pred`."""
    return "label" if before.profiles.get("label") and after.profiles.get("label") else "pred"


def _padded(a: Profile, b: Profile) -> tuple[Profile, Profile]:
    n = max(len(a.count), len(b.count))
    pad = [np.pad(x, (0, n - len(x))) for x in (a.count, a.mean, a.var, b.count, b.mean, b.var)]
    return Profile(*pad[:3]), Profile(*pad[3:])


def _bin_name(b: int, bins: int) -> str:
    return f"{100 * b // bins}-{100 * (b + 1) // bins} % of length"


def position_profile(before: Sample, after: Sample, threshold: float, alpha: float) -> Check:
    """Per class and relative-position bin: the change of the mean score."""
    group = profile_group(before, after)
    name = "position_profile"
    unit = f"{group} mean score per relative bin, as a fraction of the peak |mean|"
    cells = []  # (class, bins, (mean, var, n) before, (mean, var, n) after)
    for c in sorted(set(before.profiles.get(group, {})) & set(after.profiles.get(group, {}))):
        a, b = _padded(before.profiles[group][c], after.profiles[group][c])
        na = np.minimum(a.count, before.classes[group].get(c, 0))
        nb = np.minimum(b.count, after.classes[group].get(c, 0))
        ok = np.flatnonzero((na > 1) & (nb > 1))
        cells.append((c, ok, (a.mean[ok], a.var[ok], na[ok]), (b.mean[ok], b.var[ok], nb[ok])))
    z = z_for(alpha, sum(len(ok) for _, ok, _, _ in cells))
    loud = [x for x in cells if any(significant_mean(*side, z).any() for side in x[2:])]
    quiet = [f"{group} {c}" for c, *_ in cells if all(c != x[0] for x in loud)]
    detail = f"no signal (left out): {', '.join(quiet)}" if quiet else ""
    tests = sum(len(ok) for _, ok, _, _ in loud)
    if tests == 0:
        return verdict(name, unit, [], threshold, alpha, detail or "no class in common")
    scale = max(float(np.abs(s[0]).max()) for x in loud for s in (x[2], x[3]) if len(s[0]))
    estimates = []
    for c, ok, a, b in loud:
        bins = len(before.profiles[group][c].count)
        wheres = [f"{group} {c}, {_bin_name(int(i), bins)}" for i in ok]
        estimates += mean_differences(wheres, a, b, scale, alpha, tests)
    return verdict(name, unit, estimates, threshold, alpha, detail)


def motif_candidates(before: Sample, after: Sample, top_k: int) -> dict[tuple, str]:
    """`{(k, kmer, class): "<motif>|class=<c>"}` of the best `top_k` significant k-mers of each
    side, named as the side that found it names them."""
    keys: dict[tuple, str] = {}
    for t in (after.motifs, before.motifs):
        if t is None or "significant" not in t.schema.names:
            continue
        sig = t.filter(pc.fill_null(t["significant"], False))
        if "rank" in sig.schema.names:
            sig = sig.sort_by("rank")
        sig = sig.slice(0, top_k)
        names = sig["motif"].to_pylist()
        for i, key in enumerate(zip(*(sig[c].to_pylist() for c in MOTIF_KEY), strict=True)):
            keys.setdefault(key, f"{names[i]}|class={key[2]}")
    return keys


def _counts(table: pa.Table | None, keys: list[tuple], column: str) -> np.ndarray:
    """`[len(keys)]` values of `column` at each key (0 where absent)."""
    if table is None or not keys:
        return np.zeros(len(keys))
    columns = [table[c].to_pylist() for c in MOTIF_KEY]
    index = {k: i for i, k in enumerate(zip(*columns, strict=True))}
    values = table[column].to_pylist()
    return np.array([values[index[k]] if k in index else 0 for k in keys], np.float64)


def _significant(table: pa.Table | None, keys: list[tuple]) -> np.ndarray:
    if table is None or "significant" not in table.schema.names:
        return np.zeros(len(keys), bool)
    return _counts(table.select([*MOTIF_KEY, "significant"]), keys, "significant") > 0


def motif_class_group(before: Sample, after: Sample) -> str:
    """Which class counts the k-mer tests used (`label` or `pred`, from motif_stats)."""
    for t in (after.motifs, before.motifs):
        if t is not None and t.num_rows and "class_source" in t.schema.names:
            source = t["class_source"][0].as_py()
            if source in ("label", "pred") and after.classes.get(source):
                return source
    return profile_group(before, after)


def _proportion_check(name, unit, keys, names, success, total, threshold, alpha) -> Check:
    """One proportion test per k-mer: `success[side] / total[side]` (`[keys]` arrays), keys
    with no rows on a side left out."""
    x1, n1, x2, n2 = success[0], total[0], success[1], total[1]
    ok = np.flatnonzero((n1 > 0) & (n2 > 0))
    est = proportions([names[i] for i in ok], x1[ok], n1[ok], x2[ok], n2[ok], alpha, len(ok))
    return verdict(name, unit, est, threshold, alpha)


def motif_checks(
    before: Sample, after: Sample, top_k: int, support_min: float, seqlet_min: float, alpha
) -> tuple[list[Check], list[dict]]:
    """The `motif_support` and `motif_seqlets` checks and one entry per k-mer that fired."""
    candidates = motif_candidates(before, after, top_k)
    keys, names = list(candidates), list(candidates.values())
    group = motif_class_group(before, after)
    sides = (before, after)
    rows = [np.array([s.classes.get(group, {}).get(c, 0) for *_, c in keys], float) for s in sides]
    holding = [
        np.minimum(_counts(s.motifs, keys, "rows_with"), r)
        for s, r in zip(sides, rows, strict=True)
    ]
    occurrences = [_counts(s.motifs, keys, "occurrences") for s in sides]
    inside = [_counts(s.motifs, keys, "in_seqlets") for s in sides]
    unit = f"share of {group} rows holding the k-mer"
    support = _proportion_check("motif_support", unit, keys, names, holding, rows, support_min,
                                alpha)  # fmt: skip
    unit = "share of the k-mer's occurrences inside seqlets"
    seqlets = _proportion_check("motif_seqlets", unit, keys, names, inside, occurrences,
                                seqlet_min, alpha)  # fmt: skip
    checks = [support, seqlets]
    return checks, _motif_findings(checks, keys, names, before, after)


def _motif_findings(checks, keys, names, before: Sample, after: Sample) -> list[dict]:
    """Each k-mer whose support or seqlet share changed: lost (significant before, not now),
    gained (the reverse), weakened or strengthened (significant on both sides)."""
    was, now = _significant(before.motifs, keys), _significant(after.motifs, keys)
    out = {}
    for check in checks:
        for e in check.fired:
            i = names.index(e.where)
            down = e.change < 0
            status = ("lost" if was[i] and not now[i] else "weakened") if down else (
                "gained" if now[i] and not was[i] else "strengthened")  # fmt: skip
            entry = out.setdefault(names[i], {"motif": names[i], "status": status, "changes": {}})
            entry["changes"][check.name] = {"change": e.change, "p_value": e.p_value}
    return list(out.values())
