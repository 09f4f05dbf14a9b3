"""`raysattr export KIND OUTPUT DEST`: a run's results in the formats other tools read.

The kinds are one table, `EXPORTS` (name -> function and what it writes); the CLI's choices and
its error for an unknown kind come from it. Every export reads the run folder through
`raysattr.io` (`RunDir`, `read_attributions`' dataset) and writes only to the user-given DEST:

- `modisco`: tfmodisco-lite's `ohe.npz` / `attr.npz` in the folder DEST (`export.modisco`);
- `bed`, `fasta`: the seqlets of `seqlets.parquet` (`export.tracks`);
- `bedgraph`: per-residue scores on the genome, from `data.coordinates` columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raysattr.config import RunConfig
from raysattr.errors import ConfigError, OutputError
from raysattr.export.modisco import WINDOW_CHOICES, describe, export_modisco
from raysattr.export.tracks import export_bed, export_bedgraph, export_fasta
from raysattr.io.rundir import RunDir


@dataclass(frozen=True)
class Export:
    """One export kind: `run(output, dest, cfg, windows, width) -> record` and what DEST is."""

    run: Callable[..., dict]
    writes: str


def _modisco(output: str, dest: str, cfg: RunConfig, windows: str, width: int) -> dict:
    return export_modisco(output, dest, windows, width)


EXPORTS = {
    "modisco": Export(_modisco, "folder: ohe.npz, attr.npz, windows.tsv, modisco.json"),
    "bed": Export(lambda o, d, c, w, n: export_bed(o, d, c), "BED6 file of seqlets"),
    "fasta": Export(lambda o, d, c, w, n: export_fasta(o, d, c), "FASTA file of seqlets"),
    "bedgraph": Export(
        lambda o, d, c, w, n: export_bedgraph(o, d, c), "bedGraph file of residue scores"
    ),
}


def export(
    kind: str,
    output: str,
    dest: str,
    cfg: RunConfig,
    windows: str = "seqlets",
    width: int = 100,
) -> str:
    """Run export `kind` of the run folder `output` into `dest`; returns the CLI's line.

    Raises:
        ConfigError: unknown kind or option; coordinates missing for a kind that needs them.
        OutputError: what the kind reads is missing (no attributions, no seqlets).
    """
    if kind not in EXPORTS:
        raise ConfigError(
            f"unknown export kind {kind!r}",
            "raysattr export KIND",
            f"use one of {', '.join(EXPORTS)}",
        )
    if not RunDir(output).present():
        raise OutputError("no such output folder", f"OUTPUT={output!r}", "give a run's output.uri")
    record = EXPORTS[kind].run(output, dest, cfg, windows, width)
    if kind == "modisco":
        return describe(record)
    place = "genome coordinates" if record["genome"] else "sequence coordinates"
    return f"raysattr: {record['records']} {kind} records ({place}) -> {dest}"


__all__ = ["EXPORTS", "WINDOW_CHOICES", "export"]
