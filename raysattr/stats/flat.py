"""A block of attribution rows as flat numpy arrays: the shared input of every accumulator.

Rows are `ok` rows of `attributions/` (schema in the README). Residue `j` of row `r` sits at flat
index `starts[r] + j`; every per-residue array has one entry per residue of the block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DNA_LETTERS = "ACGT"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard ones: protein k-mers use only these
ALPHABETS = {"dna": DNA_LETTERS, "protein": AMINO_ACIDS, "text": ""}
DEFAULT_KMER_SIZES = {"dna": [4, 5, 6, 7, 8], "protein": [2, 3, 4], "text": [1, 2]}
SCHEME_ALPHABET = {"kmer": "dna", "residue": "protein", "text": "text"}
WORD_RE = re.compile(r"\w+")

# Columns the statistics read; the rest of a row (token lists, extras) stays on disk.
BASE_COLUMNS = ["id", "label", "pred", "target", "status", "sequence", "residue_attr"]


def infer_alphabet(sequences: list[str]) -> str:
    """`dna` when all letters are in ACGTN, `protein` when all are upper-case, else `text`."""
    letters = set("".join(s for s in sequences if s))
    if letters and letters <= set("ACGTN"):
        return "dna"
    if letters and all("A" <= c <= "Z" for c in letters):
        return "protein"
    return "text"


def letter_codes(alphabet: str) -> np.ndarray:
    """Lookup table `[256]` from ASCII byte to letter index, -1 outside the alphabet."""
    table = np.full(256, -1, dtype=np.int16)
    for i, letter in enumerate(ALPHABETS[alphabet]):
        table[ord(letter)] = i
    return table


@dataclass
class FlatRows:
    """`n` rows flattened to `total` residues.

    Attributes:
        ids: `[n]` object array of row ids.
        classes: `[n]` int64 class used for motif statistics (label, or pred where null).
        labels, preds, targets: `[n]` int64 (labels -1 where null).
        sequences: `[n]` strings cut to the scored residues.
        lengths, starts: `[n]` residues per row and flat offset of each row.
        scores: `[total]` float64 residue attributions.
        row_of, pos: `[total]` row index and position within the row of every residue.
    """

    ids: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    targets: np.ndarray
    sequences: list[str]
    lengths: np.ndarray
    starts: np.ndarray
    scores: np.ndarray
    row_of: np.ndarray
    pos: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.lengths)

    def codes(self, alphabet: str) -> np.ndarray:
        """`[total]` int16 letter index per residue (-1 = outside the alphabet, e.g. `N`)."""
        joined = "".join(self.sequences).encode("ascii", errors="replace")
        return letter_codes(alphabet)[np.frombuffer(joined, dtype=np.uint8)]


def _int_column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, -1, dtype=np.int64)
    return pc.fill_null(table.column(name).cast(pa.int64()), -1).to_numpy()


def flatten(
    table: pa.Table, class_by: str = "label", exclude_unconverged: bool = False
) -> FlatRows:
    """The `ok` rows of an attributions block as `FlatRows` (without `converged = false` rows
    when `exclude_unconverged`; rows with no delta have a null `converged` and stay).

    Rows explaining a class other than their own (`target=all` writes one row per class) are left
    out, so each sequence counts once; `class_by="pred"` uses the prediction as the class.

    Raises:
        ValueError: a required column is missing, or a row's residue scores outnumber its letters.
    """
    missing = [
        c
        for c in ("id", "pred", "target", "sequence", "residue_attr")
        if c not in table.column_names
    ]
    if missing:
        raise ValueError(f"attributions block lacks column(s) {missing}")
    if "status" in table.column_names:
        table = table.filter(pc.equal(table.column("status"), "ok"))
    table = table.filter(pc.is_valid(table.column("residue_attr")))
    if exclude_unconverged and "converged" in table.column_names:
        table = table.filter(pc.fill_null(table.column("converged"), True))
    labels, preds = _int_column(table, "label"), _int_column(table, "pred")
    classes = preds if class_by == "pred" else np.where(labels >= 0, labels, preds)
    targets = _int_column(table, "target")
    keep = _one_row_per_sequence(
        table.column("id").to_numpy(zero_copy_only=False), targets, classes
    )
    if not keep.all():
        table = table.filter(pa.array(keep))
        labels, preds, classes, targets = labels[keep], preds[keep], classes[keep], targets[keep]
    attr = table.column("residue_attr").combine_chunks()
    lengths = pc.list_value_length(attr).to_numpy(zero_copy_only=False).astype(np.int64)
    scores = pc.list_flatten(attr).to_numpy(zero_copy_only=False).astype(np.float64)
    sequences = table.column("sequence").to_pylist()
    for i, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
        if seq is None or len(seq) < n:
            rid = table.column("id")[i].as_py()
            raise ValueError(f"row {rid!r}: {n} residue scores but sequence has {len(seq or '')}")
    sequences = [s[:n] for s, n in zip(sequences, lengths, strict=True)]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    return FlatRows(
        ids=table.column("id").to_numpy(zero_copy_only=False),
        classes=classes,
        labels=labels,
        preds=preds,
        targets=targets,
        sequences=sequences,
        lengths=lengths,
        starts=starts,
        scores=scores,
        row_of=row_of,
        pos=np.arange(len(scores), dtype=np.int64) - np.repeat(starts, lengths),
    )


def _one_row_per_sequence(ids: np.ndarray, targets: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """`[n]` bool: drop rows of an id that appears several times when they explain another class."""
    _, inverse, counts = np.unique(ids.astype(str), return_inverse=True, return_counts=True)
    repeated = counts[inverse] > 1
    return ~repeated | (targets == classes)


def window_sums(values: np.ndarray, flat: FlatRows, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of `values` over every window of `k` residues that stays inside its row.

    Returns:
        `(starts, sums)`: flat start index `[m]` of each window and its sum `[m]`.
    """
    cs = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    idx = np.flatnonzero(flat.pos <= flat.lengths[flat.row_of] - k)
    return idx, cs[idx + k] - cs[idx]


def smooth_abs(flat: FlatRows, window: int) -> np.ndarray:
    """`[total]` mean |score| over a centred window of `window` residues, cut at row ends."""
    half = window // 2
    cs = np.concatenate([[0.0], np.cumsum(np.abs(flat.scores))])
    row_start = flat.starts[flat.row_of]
    row_end = row_start + flat.lengths[flat.row_of]
    idx = np.arange(len(flat.scores))
    lo = np.maximum(row_start, idx - half)
    hi = np.minimum(row_end, idx + half + 1)
    return (cs[hi] - cs[lo]) / (hi - lo)
