"""Read what a run directory holds for the report (local path or `s3://`); every file but
`attributions/` may be absent, and then reads as None."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from raysattr.errors import OutputError
from raysattr.io.rundir import RunDir
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


def read_run_files(output_uri: str) -> RunFiles:
    """Read every optional file of `output_uri` that exists.

    Raises:
        ValueError: a file exists but cannot be parsed (names the file).
    """
    out = RunDir(output_uri)
    files = RunFiles(output_uri)
    for name in PARQUET_FILES:
        files.tables[name] = out.read_parquet(f"{name}.parquet")
    for name in JSON_FILES:
        try:
            files.json[name] = out.read_json(f"{name}.json")
        except OutputError as exc:
            raise ValueError(str(exc)) from exc
    meme = out.read_bytes("motifs.meme")
    if meme is not None:
        files.motifs = read_meme_text(meme.decode("utf-8"))
    return files


def read_meme_text(text: str) -> list[dict]:
    """Motifs of a MEME 4 text file (`raysattr.stats.motifs.read_meme`, the writer's reader)."""
    return read_meme(text)
