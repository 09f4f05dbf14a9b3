"""Sections built from the dataset-level files of `raysattr aggregate` and `raysattr audit`:
position profiles, motifs, attention agreement, layer heatmap, faithfulness, audit. Each says
which command produces its file when the file is missing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.report.html import Section, key_values, missing, paragraph, table
from raysattr.report.inputs import PRODUCERS, RunFiles
from raysattr.report.sections import flatten
from raysattr.report.svg import bar_chart, fmt, heatmap, line_chart, sequence_logo

CLASS_GROUPS = ("label", "pred", "target")  # preferred grouping of per-class profiles
MAX_CHARTS = 8


def _rows(table: pa.Table, **equal) -> pa.Table:
    """Rows of `table` whose columns equal the given values."""
    mask = None
    for column, value in equal.items():
        m = pc.equal(table.column(column), value)
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask) if mask is not None else table


def _class_group(table: pa.Table) -> str | None:
    groups = set(table.column("group").to_pylist())
    return next((g for g in CLASS_GROUPS if g in groups), None)


def _series(table: pa.Table, group: str | None, value: str, x: str) -> list:
    """`(name, x, y)` per group value (plus 'all'), sorted by x."""
    out = []
    keys = (
        [("all", -1)]
        + [
            (group, v)
            for v in sorted(set(_rows(table, group=group).column("group_value").to_pylist()))
        ]
        if group
        else [("all", -1)]
    )
    for g, v in keys:
        part = _rows(table, group=g, group_value=v).sort_by(x)
        if part.num_rows:
            name = "all" if g == "all" else f"{g} {v}"
            out.append((name, part.column(x).to_numpy(), part.column(value).to_numpy()))
    return out


def positions_section(files: RunFiles) -> Section:
    """Mean and mean |score| along the sequence, per class."""
    stats = files.table("position_stats")
    if stats is None:
        return Section(
            "positions",
            "Position profiles",
            missing("position_stats.parquet", PRODUCERS["position_stats.parquet"]),
        )
    group = _class_group(stats)
    body = paragraph(
        f"Lines: all rows and each class ({group or 'no class column'}). 'relative' bins cover "
        "equal fractions of each sequence's length; 'position' is the absolute residue index."
    )
    charts = []
    for axis, x_label in (("relative", "relative position bin"), ("position", "residue index")):
        part = _rows(stats, axis=axis)
        if not part.num_rows:
            continue
        for value, name in (("mean", "mean score"), ("mean_abs", "mean |score|")):
            series = _series(part, group, value, "index")
            charts.append(line_chart(series, f"{name} by {axis}", x_label, name))
    body += f'<div class="charts">{"".join(charts)}</div>'
    return Section("positions", "Position profiles", body)


MOTIF_COLUMNS = (
    "rank", "k", "motif", "class", "occurrences", "rows_with", "in_seqlets", "outside_seqlets",
    "score_mean", "seqlet_odds", "class_odds", "log10_p", "q", "significant",
)  # fmt: skip


def motifs_section(files: RunFiles, limit: int = 25) -> Section:
    """Statistics summary, motif table, logos from motifs.meme, strongest seqlets."""
    stats, motif_stats = files.json.get("stats"), files.table("motif_stats")
    body = ""
    if stats is not None:
        keys = ("rows", "rows_ok", "alphabet", "class_source", "threshold", "n_seqlets",
                "n_seqlets_kept", "kmer_sizes")  # fmt: skip
        body += key_values([(k, stats.get(k)) for k in keys if k in stats])
    else:
        body += missing("stats.json", PRODUCERS["stats.json"])
    if stats is not None and "motifs" in stats:
        body += "<h3>Motifs (motif-level test, database matches)</h3>" + _motif_rows(stats)
    body += "<h3>k-mers by rank</h3>"
    if motif_stats is None:
        body += missing("motif_stats.parquet", PRODUCERS["motif_stats.parquet"])
    else:
        cols = [c for c in MOTIF_COLUMNS if c in motif_stats.column_names]
        head = motif_stats.sort_by("rank").slice(0, limit).select(cols).to_pylist()
        body += paragraph(f"{min(limit, motif_stats.num_rows)} of {motif_stats.num_rows} rows.")
        body += table(cols, [[r[c] for c in cols] for r in head], "motifs")
    body += '<h3>Sequence logos (motifs.meme)</h3><div class="charts" id="logos">'
    body += _logos(files, (stats or {}).get("alphabet")) + "</div>"
    body += "<h3>Strongest seqlets</h3>" + _seqlets(files.table("seqlets"))
    return Section("motifs", "Motifs", body)


MOTIF_ROW_COLUMNS = ("name", "consensus", "class", "nsites", "share", "q", "database matches",
                     "merged copies")  # fmt: skip


def _motif_rows(stats: dict) -> str:
    """One row per reported motif of stats.json: support, motif-level q, database matches."""
    motifs, rejected = stats.get("motifs") or [], stats.get("motifs_rejected") or []
    note = (
        f"{len(motifs)} motif(s) reported; {len(rejected)} candidate(s) dropped by the motif "
        f"test (no more frequent than in shuffled seqlets, or under stats.min_motif_share of "
        f"their class's seqlets). Database: {stats.get('motif_database') or 'none'}; both "
        f"strands: {stats.get('both_strands', False)}."
    )
    rows = [
        [
            m.get("name"),
            m.get("consensus"),
            m.get("class"),
            m.get("nsites"),
            m.get("share"),
            _from_log10(m.get("log10_q")),
            "; ".join(_match(x) for x in m.get("matches") or []) or "none",
            ", ".join(m.get("merged") or []) or "none",
        ]
        for m in motifs
    ]
    return paragraph(note) + table(MOTIF_ROW_COLUMNS, rows, "motif-level")


def _from_log10(value) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    exponent = int(np.floor(value))
    return f"{10 ** (value - exponent):.2g}e{exponent:+d}"


def _match(m: dict) -> str:
    name = f"{m.get('id')} {m.get('name') or ''}".strip()
    return f"{name} (q={fmt(m.get('q'))}, {m.get('strand', '+')})"


def _logos(files: RunFiles, alphabet_name: str | None) -> str:
    if files.motifs is None:
        if alphabet_name == "text":
            return paragraph("Text runs have no letter alphabet: no logos are drawn.")
        return missing("motifs.meme", PRODUCERS["motifs.meme"])
    if not files.motifs:
        return paragraph("motifs.meme holds no motif.")
    logos = []
    for motif in files.motifs[: MAX_CHARTS * 3]:
        letters = motif.get("alphabet") or _default_alphabet(motif["pwm"].shape[1])
        title = (
            f"{motif['name']} {motif.get('consensus', '')} "
            f"(n={motif.get('nsites')}, E={fmt(motif.get('evalue', float('nan')))})"
        )
        logos.append(sequence_logo(motif["pwm"], letters, title))
    return "".join(logos)


def _default_alphabet(size: int) -> str:
    return {4: "ACGT", 20: "ACDEFGHIKLMNPQRSTVWY"}.get(size, "")


def _seqlets(seqlets: pa.Table | None, limit: int = 15) -> str:
    if seqlets is None:
        return missing("seqlets.parquet", PRODUCERS["seqlets.parquet"])
    cols = [c for c in ("id", "class", "start", "end", "sequence", "score", "peak", "motif")
            if c in seqlets.column_names]  # fmt: skip
    top = (
        seqlets.sort_by([("abs_score", "descending")])
        if "abs_score" in seqlets.column_names
        else seqlets
    )
    rows = top.slice(0, limit).select(cols).to_pylist()
    return paragraph(f"{len(rows)} of {seqlets.num_rows} kept seqlets, by |score|.") + table(
        cols, [[r[c] for c in cols] for r in rows], "seqlets"
    )


def agreement_section(files: RunFiles) -> Section:
    """Attention-vs-attribution agreement: per-metric histograms over [-1, 1] and a table."""
    stats = files.table("agreement_stats")
    if stats is None:
        note = missing("agreement_stats.parquet", PRODUCERS["agreement_stats.parquet"])
        return Section("agreement", "Attention vs attribution", note)
    edges = np.linspace(-1, 1, 21)
    labels = [f"{a:.1f}..{b:.1f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    charts = [
        bar_chart(
            np.asarray(r["hist"] or [0] * 20), labels, f"{r['metric']} (all rows)", r["metric"]
        )
        for r in _rows(stats, group="all").to_pylist()[:MAX_CHARTS]
        if len(r["hist"] or []) == len(labels)
    ]
    cols = [c for c in ("metric", "group", "group_value", "count", "mean", "std", "min", "max")
            if c in stats.column_names]  # fmt: skip
    rows = stats.select(cols).slice(0, 60).to_pylist()
    body = f'<div class="charts">{"".join(charts)}</div>'
    body += table(cols, [[r[c] for c in cols] for r in rows], "agreement")
    return Section("agreement", "Attention vs attribution", body)


def layers_section(files: RunFiles) -> Section:
    """Layer-conductance heatmaps: layer x relative position bin, mean score."""
    stats = files.table("layer_stats")
    if stats is None:
        note = missing("layer_stats.parquet", PRODUCERS["layer_stats.parquet"])
        return Section("layers", "Layer heatmap", note)
    group = _class_group(stats)
    keys = [("all", -1)] + ([(group, v) for v in sorted(set(_rows(stats, group=group).column(
        "group_value").to_pylist()))] if group else [])  # fmt: skip
    charts = []
    for g, v in keys[:4]:
        part = _rows(stats, group=g, group_value=v)
        if not part.num_rows:
            continue
        layers = sorted(set(part.column("layer").to_pylist()))
        bins = sorted(set(part.column("bin").to_pylist()))
        matrix = np.full((len(layers), len(bins)), np.nan)
        for r in part.select(["layer", "bin", "mean"]).to_pylist():
            matrix[layers.index(r["layer"]), bins.index(r["bin"])] = r["mean"]
        title = "all rows" if g == "all" else f"{g} {v}"
        charts.append(
            heatmap(matrix, [f"layer {x}" for x in layers], [str(b) for b in bins], title)
        )
    body = paragraph("Mean layer conductance by layer (rows) and relative position bin (columns).")
    return Section("layers", "Layer heatmap", body + f'<div class="charts">{"".join(charts)}</div>')


def faithfulness_section(files: RunFiles) -> Section:
    """Deletion and insertion curves (attribution order vs random) and AOPC numbers."""
    qc, qc_json = files.table("qc"), files.json.get("qc")
    if qc is None and qc_json is None:
        note = missing("qc.parquet", PRODUCERS["qc.parquet"])
        return Section("faithfulness", "Faithfulness", note)
    body = _qc_numbers(qc_json) if qc_json else missing("qc.json", PRODUCERS["qc.json"])
    if qc is None:
        body += missing("qc.parquet", PRODUCERS["qc.parquet"])
        return Section("faithfulness", "Faithfulness", body)
    body += paragraph(
        "Deletion removes the highest-scored residues first: a faithful map drops p(target) "
        "faster than random order. Insertion restores them first: it should rise faster."
    )
    charts = "".join(_qc_chart(qc, value, name) for value, name in _QC_CURVES)
    return Section("faithfulness", "Faithfulness", body + f'<div class="charts">{charts}</div>')


_QC_CURVES = (("p_deleted", "deletion"), ("p_inserted", "insertion"))
_AOPC = ("aopc_comprehensiveness", "aopc_sufficiency")


def _qc_numbers(qc_json: dict) -> str:
    """AOPC by order (overall and per target), then the other scalars of qc.json."""
    scopes = [("all", qc_json)] + sorted((qc_json.get("by_target") or {}).items())
    rows = [
        [
            scope,
            metric,
            *(part.get(metric, {}).get(o) for o in ("attribution", "random", "difference")),
        ]  # fmt: skip
        for scope, part in scopes
        for metric in _AOPC
        if isinstance(part.get(metric), dict)
    ]
    cols = ("target", "metric", "attribution", "random", "difference")
    rest = {k: v for k, v in qc_json.items() if k not in (*_AOPC, "by_target", "curves")}
    return table(cols, rows, "aopc") + key_values(flatten(rest))


def _qc_chart(qc: pa.Table, value: str, name: str) -> str:
    """Mean curve per order, with the full-input (and baseline) probability as references."""
    means = qc.group_by(["order", "fraction"]).aggregate([(value, "mean")])
    series = [
        (order, part.column("fraction").to_numpy(), part.column(f"{value}_mean").to_numpy())
        for order in sorted(set(means.column("order").to_pylist()))
        for part in [_rows(means, order=order).sort_by("fraction")]
    ]
    fractions = np.unique(qc.column("fraction").to_numpy())
    for column, label in (("p_full", "full input"), ("p_baseline", "baseline")):
        if column in qc.column_names:
            mean = float(np.nanmean(qc.column(column).to_numpy(zero_copy_only=False)))
            series.append((label, fractions, np.full(len(fractions), mean)))
    references = ("full input", "baseline")
    return line_chart(
        series, f"{name}: mean p(target)", "fraction of tokens", "p", references=references
    )


def audit_section(files: RunFiles) -> Section:
    """Drift checks against a previous audit: per check the change, its interval and p-value,
    and the threshold, in the check's unit."""
    audit = files.json.get("audit")
    if audit is None:
        return Section("audit", "Audit", missing("audit.json", PRODUCERS["audit.json"]))
    status = str(audit.get("status", "n/a"))
    body = paragraph(f"status: {status}; previous run: {audit.get('previous', 'n/a')}",
                     "ok" if status in ("ok", "baseline") else "warn")  # fmt: skip
    snapshot = audit.get("snapshot") or {}
    body += key_values(
        [
            ("mode", f"{audit.get('mode', 'n/a')} ({audit.get('mode_reason', '')})"),
            ("rows in the snapshot", snapshot.get("rows", "n/a")),
            ("rows attributed by this audit", audit.get("rows_processed", "n/a")),
            ("error rows in the snapshot", snapshot.get("errors", "n/a")),
            ("compared", _compared(audit)),
        ]
    )
    cols = ("name", "passed", "change", "interval", "p-value", "threshold", "unit", "where",
            "detail")  # fmt: skip
    body += table(cols, [_check_row(c) for c in audit.get("checks") or []], "checks")
    for key in ("drift", "motifs_gained", "motifs_lost"):
        items = audit.get(key) or []
        body += paragraph(f"{key}: {', '.join(map(str, items)) if items else 'none'}")
    return Section("audit", "Audit", body)


def _compared(audit: dict) -> str:
    rows = audit.get("rows_compared") or {}
    what = audit.get("comparison", "n/a")
    return f"{what}: {rows.get('before', '?')} rows before, {rows.get('after', '?')} after"


def _check_row(c: dict) -> list:
    """A check of audit.json as a table row (checks written before intervals existed show
    their `value` as the change)."""
    interval = c.get("interval")
    shown = f"[{fmt(interval[0])}, {fmt(interval[1])}]" if interval else ""
    change = c.get("change", c.get("value"))
    p = c.get("p_value")
    p_text = "" if p is None else f"{p:.3g}"
    rest = [c.get(k, "") for k in ("threshold", "unit", "where", "detail")]
    return [c.get("name"), c.get("passed"), change, shown, p_text, *rest]
