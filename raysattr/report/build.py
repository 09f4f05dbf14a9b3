"""`build_report(output_uri)`: read a run directory and write its self-contained `report.html`.

attributions/ --scan (scalars + one score sum a row)--> counts, deltas, top/bottom keys
              --filtered read of those keys----------> coloured sequences
summary.json, stats.json, *_stats.parquet, seqlets, motifs.meme, qc.*, audit.json
              --read whole when present--------------> the other sections
"""

from __future__ import annotations

import time

from raysattr.config import ReportConfig
from raysattr.io.rundir import REPORT, RunDir
from raysattr.report.html import Section, page
from raysattr.report.inputs import read_run_files
from raysattr.report.ranking import fetch_rows, scan_attributions
from raysattr.report.sections import delta_section, sequences_section, summary_section
from raysattr.report.stat_sections import (
    agreement_section,
    audit_section,
    faithfulness_section,
    layers_section,
    motifs_section,
    positions_section,
)

# Every section the page holds, in order; a section whose file is missing says so.
SECTION_IDS = (
    "summary",
    "sequences",
    "positions",
    "motifs",
    "deltas",
    "agreement",
    "layers",
    "faithfulness",
    "audit",
)


def render_report(output_uri: str, cfg: ReportConfig | None = None) -> str:
    """The report's HTML text for the run directory `output_uri` (nothing is written).

    Raises:
        ValueError: `report.top_n`/`report.max_residues` below 1, no `attributions/`, or an
            optional file that exists but cannot be parsed.
    """
    cfg = cfg or ReportConfig()
    for key in ("top_n", "max_residues"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"report.{key} must be >= 1, got {getattr(cfg, key)}")
    scan = scan_attributions(output_uri, cfg.top_n)
    top_keys = {(r.path, r.row) for r in scan.top}
    bottom = [r for r in scan.bottom if (r.path, r.row) not in top_keys]  # < 2 x top_n rows
    rows = fetch_rows(output_uri, scan.top + bottom)
    files = read_run_files(output_uri)
    sections: list[Section] = [
        summary_section(files, scan),
        sequences_section(rows[: len(scan.top)], rows[len(scan.top) :], cfg.max_residues),
        positions_section(files),
        motifs_section(files),
        delta_section(files, scan),
        agreement_section(files),
        layers_section(files),
        faithfulness_section(files),
        audit_section(files),
    ]
    summary = files.json.get("summary") or {}
    run_id = summary.get("run_id", "")
    # An overwrite run builds its report in a staging folder: name the output it is moved to.
    shown = summary.get("config", {}).get("output", {}).get("uri") or output_uri
    subtitle = f"{shown} · run {run_id or 'n/a'} · built {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return page("raysattr report", subtitle, sections)


def build_report(output_uri: str, cfg: ReportConfig | None = None) -> str:
    """Write `<output_uri>/report.html` (local or s3://) and return its path.

    Args:
        output_uri: a run directory holding `attributions/` (and optionally the statistics,
            qc and audit files).
        cfg: `report` settings (`top_n`, `max_residues`); defaults when None.

    Returns:
        The written path (an `s3://` URI for S3 outputs).
    """
    text = render_report(output_uri, cfg)
    return RunDir(output_uri).write_text(REPORT, text)
