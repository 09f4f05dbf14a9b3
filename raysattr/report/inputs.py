"""Read what a run directory holds for the report (local path or `s3://`); every file but
`attributions/` may be absent, and then reads as None."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.io.fs import filesystem

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
    """Motifs of a MEME 4 text file: `[{name, consensus, alphabet, pwm [W, A], nsites, evalue}]`.

    Uses `raysattr.stats.motifs.read_meme` (the writer's own reader) when it is importable, else
    a small parser of the same format.
    """
    try:
        from raysattr.stats.motifs import read_meme
    except ImportError:
        return _parse_meme(text)
    return read_meme(text)


_MATRIX = re.compile(r"letter-probability matrix:(?P<attrs>[^\n]*)")


def _parse_meme(text: str) -> list[dict]:
    alphabet = ""
    match = re.search(r"^ALPHABET\s*=\s*(\S+)", text, re.MULTILINE)
    if match:
        alphabet = match.group(1)
    motifs = []
    for block in re.split(r"^MOTIF\s+", text, flags=re.MULTILINE)[1:]:
        head, _, rest = block.partition("\n")
        names = head.split()
        found = _MATRIX.search(rest)
        if not names or not found:
            raise ValueError(
                f"motifs.meme: MOTIF {head.strip()!r} has no letter-probability matrix"
            )
        attrs = dict(re.findall(r"(\w+)\s*=\s*(\S+)", found.group("attrs")))
        width = int(attrs.get("w", 0))
        lines = rest[found.end() :].strip().splitlines()[:width]
        pwm = np.array([[float(v) for v in line.split()] for line in lines], np.float64)
        if pwm.shape[0] != width or (width and pwm.shape[1] != int(attrs.get("alength", 0))):
            raise ValueError(f"motifs.meme: MOTIF {names[0]!r}: matrix is not w x alength")
        motifs.append(
            {
                "name": names[0],
                "consensus": names[1] if len(names) > 1 else "",
                "alphabet": alphabet,
                "pwm": pwm,
                "nsites": int(float(attrs.get("nsites", 0))),
                "evalue": float(attrs.get("E", "nan")),
            }
        )
    return motifs
