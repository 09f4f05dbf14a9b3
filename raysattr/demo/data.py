"""Synthetic sequence datasets with a planted motif: the ground truth attributions must recover.

A linked dataset (the default) plants `motif` once in every positive row (label 1) and nowhere
in the negatives (label 0), so the motif alone decides the class. Two negative controls keep the
same shape but carry no class-linked motif:

- `motif=None`: nothing is planted; labels are random (`positive_fraction` of them are 1).
- `plant_in_negatives=True`: the motif is planted once in *every* row, whatever its label, so it
  is present but says nothing about the class.

Background residues are uniform over ACGT (`dna`) or the 20 standard amino acids (`protein`).
Apart from the planted copy, no row contains the motif (rows that do by chance are redrawn), so
`motif_start` is the only occurrence. Everything is drawn from one `numpy` generator seeded by
`seed`: the same spec gives the same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

ALPHABETS = {"dna": "ACGT", "protein": "ACDEFGHIKLMNPQRSTVWY"}
ID_PREFIX = {"dna": "dna", "protein": "prot"}
FASTA_WIDTH = 60
_MAX_REDRAW_ROUNDS = 50


@dataclass
class DatasetSpec:
    """What to generate.

    Attributes:
        alphabet: `dna` or `protein`.
        n_rows: number of sequences.
        min_length: shortest sequence, in residues.
        max_length: longest sequence, in residues (inclusive).
        motif: the planted motif; None plants nothing (labels are then random).
        motif_window: half-open residue range `[start, end)` the whole planted motif lies in;
            None = anywhere in the sequence.
        positive_fraction: share of rows with label 1 (rounded to a whole number of rows).
        seed: seed of the generator.
        plant_in_negatives: plant the motif in every row, so it carries no class information.
    """

    alphabet: str = "dna"
    n_rows: int = 1000
    min_length: int = 80
    max_length: int = 160
    motif: str | None = "TATAATGCGC"
    motif_window: tuple[int, int] | None = None
    positive_fraction: float = 0.5
    seed: int = 0
    plant_in_negatives: bool = False


def demo_dna_spec(seed: int = 0) -> DatasetSpec:
    """The embedded demo: 2,000 DNA rows of 80-160 nt, a 10-nt motif inside residues 30-50."""
    return DatasetSpec("dna", 2000, 80, 160, "TATAATGCGC", (30, 50), 0.5, seed)


def demo_protein_spec(seed: int = 0) -> DatasetSpec:
    """Protein counterpart: 1,500 rows of 60-120 aa, a 6-aa motif inside residues 20-32.

    The window is narrower than the DNA one: a tiny residue-level BERT learns an ordered 6-residue
    conjunction from 1,200 rows only when the motif's position varies little (a 20-50 window
    plateaus near 80 % held-out accuracy).
    """
    return DatasetSpec("protein", 1500, 60, 120, "WHCKYM", (20, 32), 0.5, seed)


def validate_spec(spec: DatasetSpec) -> None:
    """Check a spec before generating from it.

    Raises:
        ValueError: naming the field and what was expected.
    """
    if spec.alphabet not in ALPHABETS:
        raise ValueError(f"alphabet={spec.alphabet!r} is not one of {', '.join(ALPHABETS)}")
    if spec.n_rows <= 0:
        raise ValueError(f"n_rows={spec.n_rows} must be > 0")
    if spec.min_length <= 0:
        raise ValueError(f"min_length={spec.min_length} must be > 0")
    if spec.max_length < spec.min_length:
        raise ValueError(f"max_length={spec.max_length} must be >= min_length={spec.min_length}")
    if not 0.0 <= spec.positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction={spec.positive_fraction} must be in [0, 1]")
    if spec.motif is None:
        if spec.motif_window is not None or spec.plant_in_negatives:
            raise ValueError(
                "motif=None plants nothing; motif_window/plant_in_negatives need a motif"
            )
        return
    _validate_motif(spec)


def _validate_motif(spec: DatasetSpec) -> None:
    letters = ALPHABETS[spec.alphabet]
    bad = sorted(set(spec.motif) - set(letters))
    if not spec.motif or bad:
        raise ValueError(
            f"motif={spec.motif!r} must be a non-empty string over {letters} "
            f"(alphabet={spec.alphabet!r}); offending letters: {bad}"
        )
    m = len(spec.motif)
    if m > spec.min_length:
        raise ValueError(
            f"motif={spec.motif!r} ({m} residues) is longer than min_length={spec.min_length}"
        )
    if spec.motif_window is None:
        return
    lo, hi = spec.motif_window
    if lo < 0 or hi > spec.min_length:
        raise ValueError(
            f"motif_window={spec.motif_window} must lie inside [0, min_length={spec.min_length}] "
            "so every sequence can hold it"
        )
    if hi - lo < m:
        raise ValueError(
            f"motif_window={spec.motif_window} is narrower than the motif ({m} residues)"
        )


def generate(spec: DatasetSpec) -> pa.Table:
    """Draw the dataset described by `spec`.

    Returns:
        Table of `n_rows` rows: `id` (str, e.g. `dna-000001`), `sequence` (str), `label` (int64),
        `motif_start` (int64, residue index of the planted motif, -1 where none was planted).

    Raises:
        ValueError: an invalid spec, or a motif so short that random background keeps holding it.
    """
    validate_spec(spec)
    rng = np.random.default_rng(spec.seed)
    n, letters = spec.n_rows, ALPHABETS[spec.alphabet]
    lengths = rng.integers(spec.min_length, spec.max_length + 1, size=n)
    labels = np.zeros(n, dtype=np.int64)
    labels[rng.permutation(n)[: round(n * spec.positive_fraction)]] = 1
    planted = _planted_rows(spec, labels)
    starts = np.full(n, -1, dtype=np.int64)
    if planted.any():
        starts[planted] = _draw_starts(spec, lengths[planted], rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    codes = rng.integers(0, len(letters), size=int(offsets[-1]), dtype=np.uint8)
    motif_codes = _encode(spec.motif, letters) if spec.motif else None
    _redraw_until_clean(codes, offsets, starts, motif_codes, spec, rng)
    table = np.frombuffer(letters.encode("ascii"), dtype=np.uint8)
    data = table[codes].tobytes()
    sequences = pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(data)
    )
    ids = [f"{ID_PREFIX[spec.alphabet]}-{i + 1:06d}" for i in range(n)]
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "sequence": sequences,
            "label": pa.array(labels, pa.int64()),
            "motif_start": pa.array(starts, pa.int64()),
        }
    )


def _planted_rows(spec: DatasetSpec, labels: np.ndarray) -> np.ndarray:
    """Boolean mask `[n_rows]` of rows that get the motif."""
    if spec.motif is None:
        return np.zeros(len(labels), dtype=bool)
    if spec.plant_in_negatives:
        return np.ones(len(labels), dtype=bool)
    return labels == 1


def _draw_starts(spec: DatasetSpec, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform planted start per planted row, `[n_planted]` int64, so the motif fits its window."""
    m = len(spec.motif)
    if spec.motif_window is None:
        lo, hi = np.zeros_like(lengths), lengths - m
    else:
        lo = np.full_like(lengths, spec.motif_window[0])
        hi = np.full_like(lengths, spec.motif_window[1] - m)
    return rng.integers(lo, hi + 1).astype(np.int64)


def _encode(motif: str, letters: str) -> np.ndarray:
    return np.array([letters.index(c) for c in motif], dtype=np.uint8)


def _plant(codes: np.ndarray, offsets: np.ndarray, starts: np.ndarray, motif: np.ndarray) -> None:
    rows = np.flatnonzero(starts >= 0)
    at = (offsets[rows] + starts[rows])[:, None] + np.arange(len(motif))
    codes[at] = motif


def _redraw_until_clean(
    codes: np.ndarray,
    offsets: np.ndarray,
    starts: np.ndarray,
    motif: np.ndarray | None,
    spec: DatasetSpec,
    rng: np.random.Generator,
) -> None:
    """Plant the motif; redraw the background of rows holding any copy but the planted one.

    `codes` is the flat `[total_residues]` residue-code buffer; rows are `offsets[i]:offsets[i+1]`.
    """
    if motif is None:
        return
    for _ in range(_MAX_REDRAW_ROUNDS):
        _plant(codes, offsets, starts, motif)
        dirty = _rows_with_extra_copies(codes, offsets, starts, motif)
        if not len(dirty):
            return
        for row in dirty:
            lo, hi = offsets[row], offsets[row + 1]
            codes[lo:hi] = rng.integers(0, len(ALPHABETS[spec.alphabet]), hi - lo, dtype=np.uint8)
    raise ValueError(
        f"motif={spec.motif!r} is too short or common: random background keeps containing it "
        f"after {_MAX_REDRAW_ROUNDS} redraws; use a longer motif"
    )


def _rows_with_extra_copies(
    codes: np.ndarray, offsets: np.ndarray, starts: np.ndarray, motif: np.ndarray
) -> np.ndarray:
    """Rows holding the motif anywhere except at their planted start (overlaps included)."""
    haystack, needle = codes.tobytes(), motif.tobytes()
    hits = []
    pos = haystack.find(needle)
    while pos >= 0:
        hits.append(pos)
        pos = haystack.find(needle, pos + 1)
    if not hits:
        return np.zeros(0, dtype=np.int64)
    hits = np.asarray(hits, dtype=np.int64)
    rows = np.searchsorted(offsets, hits, side="right") - 1
    inside = hits + len(motif) <= offsets[rows + 1]  # a hit across a row boundary is no copy
    extra = inside & (hits - offsets[rows] != starts[rows])
    return np.unique(rows[extra])


def write(table: pa.Table, path: str | Path, fmt: str) -> str:
    """Write `table` to a local path or `s3://` URI as parquet, csv, fasta or jsonl.

    FASTA records are `>ID label=L motif_start=S` headers (extra fields only for columns that
    exist) with the sequence wrapped at 60 characters per line.

    Returns:
        `path`, as a string.

    Raises:
        ValueError: unknown `fmt`, or a table without `id`/`sequence` for FASTA.
    """
    from raysattr.io.fs import filesystem

    if fmt not in _WRITERS:
        raise ValueError(f"fmt={fmt!r} is not one of {', '.join(_WRITERS)}")
    fs, local = filesystem(str(path))
    parent = local.rsplit("/", 1)[0] if "/" in local else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(local, "wb") as handle:
        _WRITERS[fmt](table, handle)
    return str(path)


def _write_parquet(table: pa.Table, handle) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, handle)


def _write_csv(table: pa.Table, handle) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, handle)


def _write_jsonl(table: pa.Table, handle) -> None:
    for row in table.to_pylist():
        handle.write((json.dumps(row) + "\n").encode("utf-8"))


def _write_fasta(table: pa.Table, handle) -> None:
    for name in ("id", "sequence"):
        if name not in table.column_names:
            raise ValueError(f"FASTA needs a {name!r} column; the table has {table.column_names}")
    extra = [c for c in ("label", "motif_start") if c in table.column_names]
    for row in table.to_pylist():
        fields = "".join(f" {c}={row[c]}" for c in extra)
        seq = row["sequence"]
        lines = [seq[i : i + FASTA_WIDTH] for i in range(0, len(seq), FASTA_WIDTH)]
        handle.write((f">{row['id']}{fields}\n" + "\n".join(lines) + "\n").encode("ascii"))


# One writer per input format of `raysattr.io.readers.INPUT_FORMATS` (tests/test_sources.py checks
# that the two tables name the same formats), so the demo exercises every reader.
_WRITERS = {
    "parquet": _write_parquet,
    "csv": _write_csv,
    "fasta": _write_fasta,
    "jsonl": _write_jsonl,
}
FORMATS = tuple(_WRITERS)
