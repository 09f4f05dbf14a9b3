"""HTML building blocks of `report.html`: the page, sections, tables, coloured sequences.

Everything that comes from data goes through `html.escape`. The page has no script and a
Content-Security-Policy that forbids every network load, so it renders the same offline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from raysattr.report.svg import diverging_colour, fmt

# No script, no external anything: images only as data: URIs, styles only inline.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
body{font-family:sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-top:8px}
h3{font-size:14px;margin:14px 0 4px}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #eee;z-index:1}
nav a{margin-right:12px;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.seq{font-family:monospace;font-size:13px;line-height:1.6;white-space:pre-wrap;word-break:break-all}
.seq span{padding:0 1px}.note{color:#666;font-size:12px}
.missing{background:#fff6e0;border:1px solid #f0c36d;padding:6px 10px;font-size:13px}
.warn{color:#a40000;font-size:13px}.ok{color:#106010;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{background:#fff}svg text{font-family:sans-serif}.legend span{padding:0 6px;margin-right:4px}
"""


@dataclass
class Section:
    """One `<section>` of the page; `id` is its anchor and the test's handle."""

    id: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: head (CSP, CSS), a navigation bar, then each section."""
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="note">{escape(subtitle)}</p>'
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


def cell(value) -> str:
    """One `<td>`: numbers right-aligned with 3 significant digits, the rest escaped text."""
    if isinstance(value, bool) or value is None:
        return f"<td>{escape(str(value))}</td>"
    if isinstance(value, (int, np.integer)):
        return f'<td class="num">{int(value)}</td>'
    if isinstance(value, (float, np.floating)):
        return f'<td class="num">{escape(fmt(value))}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(columns: Sequence[str], rows: Iterable[Sequence], css_class: str = "") -> str:
    """A table with a header row; cells are formatted by `cell` (or passed as raw `<td>`)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(v if isinstance(v, RawCell) else cell(v) for v in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{escape(css_class)}"><tr>{head}</tr>{body}</table>'


class RawCell(str):
    """A `<td>...</td>` already built (and escaped) by the caller."""


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column table of names and values."""
    return table(("name", "value"), list(pairs), "kv")


def missing(file: str, producer: str) -> str:
    """The note shown where an optional file is absent, naming the command that writes it."""
    return (
        f'<p class="missing">Not available: <code>{escape(file)}</code> is missing. '
        f"Produce it with <code>{escape(producer)}</code>.</p>"
    )


def paragraph(text: str, css_class: str = "note") -> str:
    return f'<p class="{escape(css_class)}">{escape(text)}</p>'


def coloured_sequence(residues: str, scores: Sequence[float], max_residues: int) -> str:
    """One `<span>` per residue, background from the diverging scale, score in its title.

    Scores are scaled by the row's largest |score| (as Captum's text visualisation expects
    scores in [-1, 1]); sequences longer than `max_residues` are cut, with a note.

    Args:
        residues: the row's `sequence` (residue letters or text characters).
        scores: `[len(residues)]` residue scores (`residue_attr`).
        max_residues: residues drawn at most.
    """
    values = np.nan_to_num(np.asarray(scores if scores is not None else [], np.float64))
    n = min(len(residues), len(values))
    scale = float(np.abs(values[:n]).max(initial=0.0)) or 1.0
    shown = min(n, max_residues)
    spans = "".join(
        f'<span style="background-color:{diverging_colour(values[i] / scale)}" '
        f'title="{i + 1} {escape(residues[i])}: {fmt(values[i])}">{escape(residues[i])}</span>'
        for i in range(shown)
    )
    note = ""
    if n > shown:
        note = f'<span class="note"> … cut: {shown} of {n} residues shown</span>'
    if len(residues) != len(values):
        note += (
            f'<span class="note"> ({len(residues)} residues, {len(values)} scores: only the '
            "aligned part is drawn)</span>"
        )
    return f'<div class="seq" data-scale="{fmt(scale)}">{spans}{note}</div>'


def colour_legend() -> str:
    """The diverging scale, as Captum's legend: negative, neutral, positive."""
    steps = [(-1.0, "negative"), (0.0, "neutral"), (1.0, "positive")]
    return (
        '<p class="legend note">'
        + "".join(
            f'<span style="background-color:{diverging_colour(v)}">{escape(name)}</span>'
            for v, name in steps
        )
        + " (each sequence scaled by its largest |score|)</p>"
    )


def number(value: float | int | None) -> str:
    """A number for running text."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt(value) if isinstance(value, float) else str(value)
