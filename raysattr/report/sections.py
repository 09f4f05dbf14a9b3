"""Sections built from `attributions/` and `summary.json`: run summary, top and bottom
sequences, convergence deltas."""

from __future__ import annotations

import math

import numpy as np

from raysattr.attribution.results import DELTA_EDGES
from raysattr.report.html import (
    RawCell,
    Section,
    colour_legend,
    coloured_sequence,
    key_values,
    missing,
    paragraph,
    table,
)
from raysattr.report.inputs import PRODUCERS, RunFiles
from raysattr.report.ranking import Scan, probability
from raysattr.report.svg import bar_chart, fmt


def flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts as `(dotted.key, leaf)` pairs; lists are shown as text."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return [(prefix.rstrip("."), value)]


def summary_section(files: RunFiles, scan: Scan) -> Section:
    """Counts (this directory and the last run), errors by code, throughput, versions,
    model fingerprint."""
    summary = files.json.get("summary")
    ok = scan.status.get("ok", 0)
    pairs = [
        ("rows in attributions/", scan.rows),
        ("ok rows", ok),
        ("error rows", scan.rows - ok),
        ("methods", ", ".join(f"{m} ({n})" for m, n in scan.methods.items())),
        ("model fingerprint", ", ".join(scan.fingerprints) or "n/a"),
    ]
    body = key_values(pairs)
    if len(scan.fingerprints) > 1:
        body += paragraph(
            f"attributions/ mixes {len(scan.fingerprints)} model fingerprints: rows come from "
            "different weights (a resumed run after a model change?)",
            "warn",
        )
    errors = sorted(((c, n) for c, n in scan.status.items() if c != "ok"), key=lambda x: -x[1])
    body += "<h3>Errors by code</h3>"
    body += table(("code", "rows"), errors) if errors else paragraph("No error rows.", "ok")
    if summary is None:
        body += missing("summary.json", PRODUCERS["summary.json"])
    else:
        body += _last_run(summary)
    return Section("summary", "Run summary", body)


def _last_run(summary: dict) -> str:
    """What summary.json says about the run that wrote it."""
    rows = summary.get("rows", {})
    last = [
        ("run id", summary.get("run_id", "n/a")),
        ("rows written", rows.get("out")),
        ("ok / error", f"{rows.get('ok')} / {rows.get('error')}"),
        ("rows skipped (already done)", rows.get("skipped_done")),
        ("rows beyond data.limit", rows.get("beyond_limit", "n/a")),
        ("duplicate ids", rows.get("n_duplicate_ids")),
        ("wall time (s)", summary.get("wall_s")),
        ("sequences/s", summary.get("sequences_per_s")),
        ("model fingerprint", summary.get("model_fingerprint", "n/a")),
    ]
    body = "<h3>Last run (summary.json)</h3>" + key_values(last)
    body += length_buckets(summary)
    body += "<h3>Versions</h3>" + key_values(sorted((summary.get("versions") or {}).items()))
    inputs = summary.get("inputs") or []
    if inputs:
        cols = ("uri", "size", "version")
        body += "<h3>Inputs</h3>" + table(cols, [[i.get(c) for c in cols] for i in inputs])
    config = summary.get("config") or {}
    if config:
        body += "<details><summary>Configuration</summary>" + key_values(flatten(config))
        body += "</details>"
    return body


def length_buckets(summary: dict) -> str:
    """The last run's length buckets (summary.json `length_buckets`): rows, engine seconds,
    rows per engine-second of one actor and padding, and the run's padding fraction."""
    buckets = summary.get("length_buckets") or []
    if not buckets:
        return ""
    rows = [
        (b["bucket"], b["rows"], fmt(b["engine_s"]), fmt(b["rows_per_s"] or 0.0),
         fmt(b["padding_fraction"] or 0.0))
        for b in buckets
    ]  # fmt: skip
    padding = fmt(summary.get("padding_fraction") or 0.0)
    head = f"<h3>Length buckets (padding: {padding} of the token positions evaluated)</h3>"
    cols = ("bucket (tokens, framed)", "rows", "engine s", "rows/s per actor", "padding")
    return head + table(cols, rows)


def _sequence_rows(rows: list[dict], max_residues: int) -> list[list]:
    out = []
    for rank, row in enumerate(rows, 1):
        pred, target = row.get("pred"), row.get("target")
        out.append(
            [
                rank,
                row["id"],
                row.get("label"),
                f"{pred} ({fmt(probability(row, pred))})",
                f"{target} ({fmt(probability(row, target))})",
                row.get("score_sum", math.nan),
                row.get("delta"),
                row.get("length"),
                RawCell(
                    "<td>"
                    + coloured_sequence(
                        row.get("sequence") or "", row["residue_attr"], max_residues
                    )
                    + "</td>"
                ),
            ]
        )
    return out


SEQUENCE_COLUMNS = (
    "#",
    "id",
    "true label",
    "predicted (prob)",
    "explained class (prob)",
    "score sum",
    "delta",
    "length",
    "residue importance",
)


def sequences_section(top: list[dict], bottom: list[dict], max_residues: int) -> Section:
    """Top and bottom rows by score sum, residues coloured by score (Captum's layout).

    Args:
        top, bottom: attribution rows (with `score_sum`), highest and lowest first.
        max_residues: residues drawn per row.
    """
    body = paragraph(
        "Score sum = sum of the row's residue scores (residue_attr); rows with status ok only. "
        "delta = Captum's convergence delta (sum of token scores minus F(x) - F(baseline))."
    )
    body += colour_legend()
    body += f'<div id="top-sequences"><h3>Top {len(top)} by score sum</h3>'
    body += table(SEQUENCE_COLUMNS, _sequence_rows(top, max_residues), "sequences")
    body += f'</div><div id="bottom-sequences"><h3>Bottom {len(bottom)} by score sum</h3>'
    body += table(SEQUENCE_COLUMNS, _sequence_rows(bottom, max_residues), "sequences")
    body += "</div>"
    if not top:
        body += paragraph("No ok rows to show.", "warn")
    return Section("sequences", "Top and bottom sequences", body)


def delta_section(files: RunFiles, scan: Scan) -> Section:
    """Histogram of |delta_rel| over every row of attributions/, plus the steps used."""
    labels = [f"<{_edge(e)}" for e in DELTA_EDGES[1:]]
    total = int(scan.delta_hist.sum())
    summary = files.json.get("summary") or {}
    tolerance = ((summary.get("config") or {}).get("attribution") or {}).get("delta_tolerance")
    body = bar_chart(
        scan.delta_hist, labels, "Convergence: |delta| / |F(x) - F(baseline)|", "delta_rel bin"
    )
    body += key_values(
        [
            ("rows with a finite delta_rel", total),
            ("largest delta_rel", scan.delta_rel_max),
            ("delta tolerance (config)", tolerance if tolerance is not None else "n/a"),
        ]
    )
    if tolerance is not None and total:
        lower = np.asarray(DELTA_EDGES[:-1])
        edge = float(lower[lower >= tolerance].min(initial=math.inf))
        over = int(scan.delta_hist[lower >= tolerance].sum())
        body += paragraph(
            f"{over} of {total} rows ({100 * over / total:.1f} %) have delta_rel >= {fmt(edge)} "
            f"(tolerance {fmt(tolerance)}).",
            "warn" if over else "ok",
        )
    steps = summary.get("n_steps") or {}
    if steps:
        body += "<h3>Integration steps used (last run)</h3>"
        body += table(("n_steps", "rows"), sorted(steps.items(), key=lambda kv: int(kv[0])))
    return Section("deltas", "Convergence deltas", body)


def _edge(value: float) -> str:
    return "inf" if math.isinf(value) else fmt(value)


def unconverged_section(files: RunFiles) -> Section:
    """The rows that missed `attribution.delta_tolerance` at the evaluation cap (summary.json's
    `convergence` block: counts and the worst rows), as a warning; and the bf16 guard's count."""
    summary = files.json.get("summary") or {}
    conv = summary.get("convergence")
    if conv is None:
        return Section("unconverged", "Unconverged rows", missing("summary.json (convergence)"))
    tolerance = ((summary.get("config") or {}).get("attribution") or {}).get("delta_tolerance")
    ok = (summary.get("rows") or {}).get("ok", 0)
    n = conv.get("unconverged", 0)
    body = key_values(
        [
            ("ok rows with converged = false", n),
            ("ok rows", ok),
            ("delta tolerance (config)", tolerance if tolerance is not None else "n/a"),
            ("rows recomputed in fp32 (bf16 guard)", conv.get("fp32_recomputed", 0)),
        ]
    )
    if not n:
        body += paragraph("Every row with a convergence delta met the tolerance.", "ok")
        return Section("unconverged", "Unconverged rows", body)
    body += paragraph(
        f"{n} of {ok} ok rows still miss the tolerance at attribution.max_evals; their scores "
        "do not sum to F(x) - F(baseline) and may be wrong. They are kept, with converged = "
        "false (stats.exclude_unconverged=true leaves them out of the statistics). Worst:",
        "warn",
    )
    worst = [(w["id"], fmt(w["delta_rel"]), w["n_steps"]) for w in conv.get("worst", [])]
    body += table(("id", "delta_rel", "n_steps"), worst)
    return Section("unconverged", "Unconverged rows", body)
