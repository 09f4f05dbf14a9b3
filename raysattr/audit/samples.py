"""What the drift checks read from an audit folder, as one `Sample` per side of a comparison:
rows per class, per-class position profiles with their variances, k-mer counts and the
run's row totals. `added_rows(now, before)` is the sample of the rows an incremental audit
added (its merged statistics minus the previous audit's), so both sides hold disjoint rows.

Inputs are the small files an audit writes (position_stats.parquet, motif_stats.parquet,
stats.json) and the snapshot totals the audit carries (`Totals`), never the per-row attributions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.io.rundir import RunDir

GROUPS = ("label", "pred")
MOTIF_KEY = ("k", "kmer", "class")  # kmer: the motif, or its canonical strand (both strands)
_COMPLEMENT = str.maketrans("ACGT", "TGCA")
MOTIF_COUNTS = ("occurrences", "rows_with", "in_seqlets")
MOTIF_KEPT = ("rank", "significant", "q", "class_source")


@dataclass
class Totals:
    """Rows of a snapshot by outcome and its `delta_rel` histogram (summary.json's bins)."""

    rows: int = 0
    errors: int = 0
    delta_hist: list[int] = field(default_factory=list)

    @classmethod
    def of_summary(cls, summary: dict | None) -> Totals:
        rows = (summary or {}).get("rows") or {}
        hist = ((summary or {}).get("delta_rel") or {}).get("histogram") or []
        return cls(int(rows.get("out", 0)), int(rows.get("error", 0)), [int(h) for h in hist])

    def __add__(self, other: Totals) -> Totals:
        return self._combine(other, 1)

    def __sub__(self, other: Totals) -> Totals:
        return self._combine(other, -1)

    def _combine(self, other: Totals, sign: int) -> Totals:
        n = max(len(self.delta_hist), len(other.delta_hist))
        a = np.pad(np.asarray(self.delta_hist, np.int64), (0, n - len(self.delta_hist)))
        b = np.pad(np.asarray(other.delta_hist, np.int64), (0, n - len(other.delta_hist)))
        return Totals(
            self.rows + sign * other.rows,
            self.errors + sign * other.errors,
            np.maximum(a + sign * b, 0).tolist(),
        )

    def as_dict(self) -> dict:
        return {"rows": self.rows, "errors": self.errors, "delta_histogram": self.delta_hist}

    @classmethod
    def of_dict(cls, d: dict) -> Totals:
        return cls(int(d["rows"]), int(d["errors"]), [int(h) for h in d["delta_histogram"]])


@dataclass
class Profile:
    """One class's relative-position profile: `[bins]` count, mean and variance of scores."""

    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray


@dataclass
class Sample:
    """One side of a comparison.

    Attributes:
        classes: `{group: {class: rows}}` for `label` and `pred` (ok rows).
        profiles: `{group: {class: Profile}}`.
        motifs: motif_stats' key columns, counts, `rank`, `significant`, `q` and
            `class_source` (None: no statistics).
        totals: rows, error rows and the delta histogram.
    """

    classes: dict[str, dict[int, int]]
    profiles: dict[str, dict[int, Profile]]
    motifs: pa.Table | None
    totals: Totals


def read_sample(uri: str, totals: Totals) -> Sample:
    """The statistics of the audit folder `uri` with its snapshot `totals`."""
    run = RunDir(uri)
    positions = run.read_parquet("position_stats.parquet")
    motifs = run.read_parquet("motif_stats.parquet")
    if motifs is not None:
        settings = (run.read_json("stats.json") or {}).get("settings") or {}
        motifs = with_kmer_key(motifs, bool(settings.get("both_strands")))
    classes = {g: class_rows(positions, g) for g in GROUPS}
    profiles = {g: class_profiles(positions, g) for g in GROUPS}
    return Sample(classes, profiles, motifs, totals)


def with_kmer_key(motifs: pa.Table, both_strands: bool) -> pa.Table:
    """motif_stats' columns the checks read, with the `kmer` key column. With both strands
    counted, motif_stats names a k-mer in the orientation its rows hold most, which two
    snapshots may disagree on; the key is the lesser of the k-mer and its reverse complement."""
    keep = [
        c for c in ("k", "motif", "class", *MOTIF_COUNTS, *MOTIF_KEPT) if c in motifs.schema.names
    ]
    motifs = motifs.select(keep)
    names = motifs["motif"].to_pylist()
    if both_strands:
        names = [min(m, m.translate(_COMPLEMENT)[::-1]) for m in names]
    return motifs.append_column("kmer", pa.array(names, pa.string()))


def _cells(positions: pa.Table | None, group: str, axis: str) -> pa.Table | None:
    if positions is None:
        return None
    keep = pc.and_(pc.equal(positions["group"], group), pc.equal(positions["axis"], axis))
    return positions.filter(keep)


def class_rows(positions: pa.Table | None, group: str) -> dict[int, int]:
    """Rows per value of `group`: every ok row has a residue at position 0."""
    t = _cells(positions, group, "position")
    if t is None:
        return {}
    t = t.filter(pc.equal(t["index"], 0))
    return dict(zip(t["group_value"].to_pylist(), t["count"].to_pylist(), strict=True))


def class_profiles(positions: pa.Table | None, group: str) -> dict[int, Profile]:
    """`{class: Profile}` over the relative-position bins (empty bins have count 0)."""
    t = _cells(positions, group, "relative")
    if t is None or t.num_rows == 0:
        return {}
    bins = int(pc.max(t["index"]).as_py()) + 1
    out = {}
    for value in sorted(set(t["group_value"].to_pylist())):
        rows = t.filter(pc.equal(t["group_value"], value))
        index = rows["index"].to_numpy()
        count, mean, var = np.zeros(bins), np.zeros(bins), np.zeros(bins)
        count[index] = rows["count"].to_numpy()
        mean[index] = rows["mean"].to_numpy()
        var[index] = rows["std"].to_numpy() ** 2  # population variance: M2 / count
        out[int(value)] = Profile(count, mean, var)
    return out


def _profile_minus(now: Profile, before: Profile) -> Profile:
    """The profile of the rows in `now` but not in `before` (Chan's merge, inverted)."""
    n = max(len(now.count), len(before.count))
    a = [np.pad(x, (0, n - len(x))) for x in (before.count, before.mean, before.var)]
    b = [np.pad(x, (0, n - len(x))) for x in (now.count, now.mean, now.var)]
    count = np.maximum(b[0] - a[0], 0)
    safe = np.maximum(count, 1)
    mean = np.where(count > 0, (b[0] * b[1] - a[0] * a[1]) / safe, 0.0)
    delta = mean - a[1]
    m2 = b[2] * b[0] - a[2] * a[0] - delta**2 * a[0] * count / np.maximum(b[0], 1)
    var = np.where(count > 0, np.maximum(m2, 0.0) / safe, 0.0)
    return Profile(count, mean, var)


def _motifs_minus(now: pa.Table | None, before: pa.Table | None) -> pa.Table | None:
    """k-mer counts of the added rows: `now`'s counts minus `before`'s, key by key."""
    if now is None or before is None or now.num_rows == 0:
        return now
    joined = now.join(
        before.select([*MOTIF_KEY, *MOTIF_COUNTS]), list(MOTIF_KEY), right_suffix="_before"
    )
    cols = {c: joined[c] for c in joined.schema.names if not c.endswith("_before")}
    for c in MOTIF_COUNTS:
        old = pc.fill_null(joined[f"{c}_before"], 0)
        cols[c] = pc.max_element_wise(pc.subtract(joined[c], old), 0)
    added = pa.table(cols)
    return added.filter(pc.greater(added["occurrences"], 0))  # k-mers only the old rows hold


def added_rows(now: Sample, before: Sample) -> Sample:
    """The sample of the rows `now` holds beyond `before` (an incremental audit merged them into
    `before`'s statistics with `before`'s seqlet threshold, so counts subtract exactly)."""
    classes = {
        g: {c: n - before.classes[g].get(c, 0) for c, n in now.classes[g].items()} for g in GROUPS
    }
    profiles = {
        g: {
            c: _profile_minus(p, before.profiles[g][c]) if c in before.profiles[g] else p
            for c, p in now.profiles[g].items()
        }
        for g in GROUPS
    }
    motifs = _motifs_minus(now.motifs, before.motifs)
    return Sample(classes, profiles, motifs, now.totals - before.totals)
