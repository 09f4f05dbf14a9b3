"""`build_report(output_uri)`: read a run directory and write its self-contained `report.html`.

attributions/ --scan (scalars + one score sum a row)--> counts, deltas, top/bottom keys
              --filtered read of those keys----------> coloured sequences
summary.json, stats.json, *_stats.parquet, seqlets, motifs.meme, qc.*, audit.json
              --read whole when present--------------> the other sections
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from raysattr.config import ReportConfig
from raysattr.io.rundir import REPORT, RunDir
from raysattr.report.html import Section, page
from raysattr.report.inputs import RunFiles, read_run_files
from raysattr.report.ranking import Scan, fetch_rows, scan_attributions
from raysattr.report.sections import (
    delta_section,
    sequences_section,
    summary_section,
    unconverged_section,
)
from raysattr.report.stat_sections import (
    agreement_section,
    audit_section,
    faithfulness_section,
    layers_section,
    motifs_section,
    positions_section,
)


@dataclass(frozen=True)
class ReportContext:
    """What section builders read: the run's optional files, the scan of `attributions/`, the
    fetched top and bottom rows (highest and lowest score sum first) and the report settings."""

    files: RunFiles
    scan: Scan
    top: list[dict]
    bottom: list[dict]
    cfg: ReportConfig


# Every section the page holds, in order, as (id, builder); a section whose file is missing
# says so. Adding a section is one entry here.
SECTIONS: tuple[tuple[str, Callable[[ReportContext], Section]], ...] = (
    ("summary", lambda c: summary_section(c.files, c.scan)),
    ("unconverged", lambda c: unconverged_section(c.files)),
    ("sequences", lambda c: sequences_section(c.top, c.bottom, c.cfg.max_residues)),
    ("positions", lambda c: positions_section(c.files)),
    ("motifs", lambda c: motifs_section(c.files)),
    ("deltas", lambda c: delta_section(c.files, c.scan)),
    ("agreement", lambda c: agreement_section(c.files)),
    ("layers", lambda c: layers_section(c.files)),
    ("faithfulness", lambda c: faithfulness_section(c.files)),
    ("audit", lambda c: audit_section(c.files)),
)
SECTION_IDS = tuple(section_id for section_id, _ in SECTIONS)


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
    context = ReportContext(files, scan, rows[: len(scan.top)], rows[len(scan.top) :], cfg)
    sections = [_build(section_id, build, context) for section_id, build in SECTIONS]
    summary = files.json.get("summary") or {}
    run_id = summary.get("run_id", "")
    # An overwrite run builds its report in a staging folder: name the output it is moved to.
    shown = summary.get("config", {}).get("output", {}).get("uri") or output_uri
    subtitle = f"{shown} · run {run_id or 'n/a'} · built {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return page("raysattr report", subtitle, sections)


def _build(
    section_id: str, build: Callable[[ReportContext], Section], context: ReportContext
) -> Section:
    section = build(context)
    if section.id != section_id:  # the anchor the table promises (nav links, tests)
        raise RuntimeError(f"report section {section_id!r} was built with id {section.id!r}")
    return section


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
