"""Seqlets and scores as genome-browser files: `export bed`, `export fasta`, `export bedgraph`.

- `bed` (BED6): one line per seqlet of `seqlets.parquet` (flanks included). With
  `data.coordinates` the seqlet is placed on the genome (chromosome, start + offset; a sequence on
  the minus strand is read from its end); without, the "chromosome" is the sequence id and
  positions are within the sequence (what `bedtools getfasta` reads from a FASTA of the
  sequences). Name `id:start-end` (sequence coordinates) and `|motifN` when the seqlet belongs to
  motif N of motifs.meme; score = |score| scaled to 0-1000; strand = the strand the statistics
  aligned the seqlet on (`strand` column, + without one), flipped for a minus-strand sequence.
- `fasta`: one record per seqlet, header `>id:start-end class=C score=S motif=M` (+ genome place).
- `bedgraph`: one line per residue of every ok row with coordinates: its `residue_attr`, sorted
  by chromosome and position; residues covered by several rows get their mean.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raysattr.config import RunConfig
from raysattr.export.rows import (
    Placement,
    coordinates,
    list_arrays,
    needs_coordinates,
    read_rows,
    read_seqlets,
    write_file,
)


def _seqlets_placed(output: str, cfg: RunConfig) -> tuple[pa.Table, Placement | None, dict]:
    """Seqlets, the genome placement of their sequences (None without coordinates) and each
    sequence's length."""
    seqlets = read_seqlets(output)
    coords = coordinates(output, cfg)
    ids = sorted(set(seqlets.column("id").to_pylist()))
    rows = read_rows(output, ["sequence", *coords.columns()], ids)
    lengths = dict(zip(rows.column("id").to_pylist(), _lengths(rows), strict=True))
    placement = Placement.of(rows, coords) if coords.chrom else None
    return seqlets, placement, lengths


def _lengths(rows: pa.Table) -> list[int]:
    return [len(s) for s in rows.column("sequence").to_pylist()]


def export_bed(output: str, dest: str, cfg: RunConfig) -> dict:
    """Seqlets as BED6 at `dest`; returns counts for the CLI line."""
    seqlets, placement, lengths = _seqlets_placed(output, cfg)
    s = seqlets.to_pydict()
    top = max(s["abs_score"]) or 1.0
    # The strand the statistics aligned a seqlet on (both-strand DNA), else +.
    seqlet_minus = [x == "-" for x in s.get("strand", ["+"] * len(s["id"]))]
    lines = []
    for i, row_id in enumerate(s["id"]):
        if placement is not None and row_id not in placement.where:
            continue  # a sequence without coordinates
        start, end = s["start"][i], s["end"][i]
        name = f"{row_id}:{start}-{end}" + (f"|motif{s['motif'][i]}" if s["motif"][i] >= 0 else "")
        score = round(1000 * s["abs_score"][i] / top)
        chrom, a, b, minus = row_id, start, end, False
        if placement is not None:
            chrom, a, b, minus = placement.interval(row_id, start, end, lengths[row_id])
        strand = "-" if minus != seqlet_minus[i] else "+"
        lines.append(f"{chrom}\t{a}\t{b}\t{name}\t{score}\t{strand}")
    write_file(dest, ("\n".join(lines) + "\n" if lines else "").encode())
    return {"kind": "bed", "records": len(lines), "genome": placement is not None, "dest": dest}


def export_fasta(output: str, dest: str, cfg: RunConfig) -> dict:
    """Seqlets as FASTA at `dest`."""
    seqlets, placement, lengths = _seqlets_placed(output, cfg)
    s = seqlets.to_pydict()
    lines = []
    for i, row_id in enumerate(s["id"]):
        start, end = s["start"][i], s["end"][i]
        header = (
            f">{row_id}:{start}-{end} class={s['class'][i]} score={s['score'][i]:.4g} "
            f"motif={s['motif'][i]}"
        )
        if placement is not None and row_id in placement.where:
            chrom, a, b, minus = placement.interval(row_id, start, end, lengths[row_id])
            header += f" {chrom}:{a}-{b}({'-' if minus else '+'})"
        lines += [header, s["sequence"][i]]
    write_file(dest, ("\n".join(lines) + "\n").encode())
    return {"kind": "fasta", "records": len(s["id"]), "genome": placement is not None, "dest": dest}


def export_bedgraph(output: str, dest: str, cfg: RunConfig) -> dict:
    """Per-residue scores of every ok row with coordinates as a bedGraph track at `dest`.

    Holds every placed residue in memory (12 bytes each) to sort and average them.
    """
    coords = coordinates(output, cfg)
    needs_coordinates(coords, "bedgraph")
    rows = read_rows(output, ["sequence", "residue_attr", "method", *coords.columns()])
    placement = Placement.of(rows, coords)
    by_chrom: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    ids = rows.column("id").to_pylist()
    scored = zip(ids, _lengths(rows), list_arrays(rows, "residue_attr"), strict=True)
    for row_id, length, scores in scored:
        if row_id not in placement.where:
            continue
        chrom, origin, minus = placement.where[row_id]
        offsets = np.arange(len(scores), dtype=np.int64)  # truncated rows: the scored head
        pos = origin + (length - 1 - offsets if minus else offsets)
        by_chrom.setdefault(chrom, []).append((pos, scores))
    method = ",".join(sorted(set(rows.column("method").to_pylist())))
    lines = [f'track type=bedGraph name="raysattr {method}" description="residue_attr of {output}"']
    n_positions = 0
    for chrom in sorted(by_chrom):
        pos = np.concatenate([p for p, _ in by_chrom[chrom]])
        values = np.concatenate([v for _, v in by_chrom[chrom]]).astype(np.float64)
        unique, inverse = np.unique(pos, return_inverse=True)
        mean = np.bincount(inverse, values) / np.bincount(inverse)
        lines += [f"{chrom}\t{p}\t{p + 1}\t{v:.6g}" for p, v in zip(unique, mean, strict=True)]
        n_positions += len(unique)
    write_file(dest, ("\n".join(lines) + "\n").encode())
    return {"kind": "bedgraph", "records": n_positions, "genome": True, "dest": dest}
