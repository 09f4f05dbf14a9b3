"""Read what a run directory holds for the report (local path or `s3://`); every file but
`attributions/` may be absent, and then reads as None."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.io.fs import filesystem
from raysattr.stats.motifs import read_meme

# Which command writes each optional file; the page names it when the file is missing.
PRODUCERS = {
    "summary.json": "raysattr run CONFIG",
    "stats.json": "raysattr aggregate OUTPUT_DIR",
    "position_stats.parquet": "raysattr aggregate OUTPUT_DIR",
    "motif_stats.parquet": "raysattr aggregate OUTPUT_DIR",
    "seqlets.parquet": "raysattr aggregate OUTPUT_DIR",
    "motifs.meme": "raysattr aggregate OUTPUT_DIR (DNA or protein runs)",
    "agreement_stats.parquet": (
        "raysattr aggregate OUTPUT_DIR, on a run with attribution.method=attention"
    ),
    "layer_stats.parquet": (
        "raysattr aggregate OUTPUT_DIR, on a run with attribution.method=layer_conductance"
    ),
    "qc.parquet": "raysattr qc OUTPUT_DIR --config CONFIG (or a run with qc.enabled=true)",
    "qc.json": "raysattr qc OUTPUT_DIR --config CONFIG (or a run with qc.enabled=true)",
    "audit.json": "raysattr audit configs/audit.yaml (audit.previous=PREVIOUS_AUDIT_DIR)",
}
PARQUET_FILES = (
    "position_stats",
    "motif_stats",
    "seqlets",
    "agreement_stats",
    "layer_stats",
    "qc",
)
JSON_FILES = ("summary", "stats", "qc", "audit")


@dataclass
class RunFiles:
    """The optional files of one run directory, read whole (they are dataset-level summaries,
    small next to `attributions/`). Missing files are None."""

    uri: str
    tables: dict[str, pa.Table | None] = field(default_factory=dict)
    json: dict[str, dict | None] = field(default_factory=dict)
    motifs: list[dict] | None = None

    def table(self, name: str) -> pa.Table | None:
        return self.tables.get(name)


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def read_run_files(output_uri: str) -> RunFiles:
    """Read every optional file of `output_uri` that exists.

    Raises:
        ValueError: a file exists but cannot be parsed (names the file).
    """
    fs, root = filesystem(output_uri)
    files = RunFiles(output_uri)
    for name in PARQUET_FILES:
        path = _join(root, f"{name}.parquet")
        files.tables[name] = pq.read_table(path, filesystem=fs) if fs.exists(path) else None
    for name in JSON_FILES:
        path = _join(root, f"{name}.json")
        if fs.exists(path):
            try:
                files.json[name] = json.loads(fs.cat_file(path).decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{name}.json in {output_uri} is not valid JSON: {exc}") from exc
        else:
            files.json[name] = None
    meme = _join(root, "motifs.meme")
    if fs.exists(meme):
        files.motifs = read_meme_text(fs.cat_file(meme).decode("utf-8"))
    return files


def read_meme_text(text: str) -> list[dict]:
    """Motifs of a MEME 4 text file (`raysattr.stats.motifs.read_meme`, the writer's reader)."""
    return read_meme(text)
