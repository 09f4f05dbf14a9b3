"""`raysattr export modisco OUTPUT DEST`: tfmodisco-lite's inputs from a run.

DEST (a folder, local or s3://) gets
- `ohe.npz`: one-hot sequences, `arr_0` `[windows, letters, width]` float32;
- `attr.npz`: hypothetical scores, `arr_0` `[windows, letters, width]` float32: the `ism`
  method's `extra_hypothetical` when the run has it, else each residue's score on its own letter
  (`residue_attr` x one-hot, zero elsewhere: what gradient methods give per residue);
- `windows.tsv`: id, window start and end in the sequence (they may run past its ends, which are
  zero-padded), and the seqlet each window is centred on (-1 for cropped windows);
- `modisco.json`: the choices (windows, width, scores) and the `modisco motifs` command to run.

Windows are `width` residues, either centred on each seqlet of `seqlets.parquet` (its core's
midpoint; the default) or one per sequence, centred on the sequence (`--windows crop`).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from raysattr.errors import ConfigError, OutputError
from raysattr.export.rows import HYPOTHETICAL, list_arrays, matrix_arrays, read_rows, read_seqlets
from raysattr.io.rundir import RunDir
from raysattr.tokenize import AMINO_ACIDS, DNA_LETTERS

WINDOW_CHOICES = ("seqlets", "crop")


def export_modisco(output: str, dest: str, windows: str = "seqlets", width: int = 100) -> dict:
    """Write tfmodisco-lite's inputs for `output` into the folder `dest`.

    Returns:
        what `modisco.json` records.

    Raises:
        ConfigError: an unknown `windows` choice or a width below 1.
        OutputError: no seqlets (`windows=seqlets`), no ok rows, or rows without per-residue
            scores over a DNA or protein alphabet.
    """
    if windows not in WINDOW_CHOICES:
        raise ConfigError(f"--windows {windows!r} is not one of {', '.join(WINDOW_CHOICES)}")
    if width < 1:
        raise ConfigError(f"--width {width} must be at least 1")
    seqlets = read_seqlets(output) if windows == "seqlets" else None
    ids = None if seqlets is None else sorted(set(seqlets.column("id").to_pylist()))
    rows = read_rows(output, ["sequence", "residue_attr", "method", HYPOTHETICAL], ids)
    scores = _scores(rows, output)
    alphabet = _alphabet(rows, scores)
    plan = _plan(rows, seqlets, windows)
    ohe, attr = _arrays(rows, scores, alphabet, plan, width)
    folder = RunDir(dest)
    record = _record(output, folder, rows, windows, width, alphabet, len(plan))
    folder.write_bytes("ohe.npz", _npz(ohe))
    folder.write_bytes("attr.npz", _npz(attr))
    folder.write_text("windows.tsv", _windows_tsv(rows, plan, width))
    folder.write_json("modisco.json", record)
    return record


def _scores(rows: pa.Table, output: str) -> list[np.ndarray]:
    """Per row `[length, letters]` hypothetical scores (ism) or `[length]` residue scores."""
    if HYPOTHETICAL in rows.column_names:
        return matrix_arrays(rows, HYPOTHETICAL)
    if "residue_attr" not in rows.column_names:
        raise OutputError(
            "the attributions have no per-residue scores (residue_attr)", f"OUTPUT={output!r}"
        )
    return list_arrays(rows, "residue_attr")


def _alphabet(rows: pa.Table, scores: list[np.ndarray]) -> str:
    """DNA or protein: from the hypothetical scores' width, else from the letters present."""
    if scores and scores[0].ndim == 2:
        width = max(s.shape[1] for s in scores)
        return DNA_LETTERS if width == len(DNA_LETTERS) else AMINO_ACIDS
    letters = set("".join(rows.column("sequence").to_pylist()))
    if letters <= set(DNA_LETTERS + "N"):
        return DNA_LETTERS
    if letters <= set(AMINO_ACIDS + "XBZUO"):
        return AMINO_ACIDS
    shown = "".join(sorted(letters - set(AMINO_ACIDS)))[:10]
    raise OutputError(
        f"export modisco needs DNA or protein sequences; these hold {shown!r}",
        fix="text runs have no alphabet to one-hot encode",
    )


def _plan(rows: pa.Table, seqlets: pa.Table | None, windows: str) -> list[tuple[int, int, int]]:
    """`(row, centre residue, seqlet index or -1)` of each window."""
    if seqlets is None:
        lengths = [len(s) for s in rows.column("sequence").to_pylist()]
        return [(j, n // 2, -1) for j, n in enumerate(lengths)]
    index = {row_id: j for j, row_id in enumerate(rows.column("id").to_pylist())}
    core_a = seqlets.column("core_start").to_pylist()
    core_b = seqlets.column("core_end").to_pylist()
    ids = seqlets.column("id").to_pylist()
    return [
        (index[i], (a + b) // 2, s)
        for s, (i, a, b) in enumerate(zip(ids, core_a, core_b, strict=True))
        if i in index
    ]


def _arrays(rows, scores, alphabet: str, plan, width: int) -> tuple[np.ndarray, np.ndarray]:
    """`(one-hot, hypothetical)`, each `[windows, letters, width]` float32."""
    lookup = np.full(256, -1, np.int64)
    lookup[np.frombuffer(alphabet.encode(), np.uint8)] = np.arange(len(alphabet))
    sequences = rows.column("sequence").to_pylist()
    ohe = np.zeros((len(plan), len(alphabet), width), np.float32)
    attr = np.zeros_like(ohe)
    for w, (j, centre, _) in enumerate(plan):
        codes = lookup[np.frombuffer(sequences[j].encode(), np.uint8)]
        row_scores = scores[j]
        start = centre - width // 2
        a, b = max(start, 0), min(start + width, len(row_scores))  # scores may be truncated
        if a >= b:
            continue
        pos = np.arange(a, b)
        known = codes[pos] >= 0
        ohe[w, codes[pos[known]], pos[known] - start] = 1.0
        if row_scores.ndim == 2:
            attr[w, :, a - start : b - start] = row_scores[a:b].T
        else:
            attr[w, codes[pos[known]], pos[known] - start] = row_scores[pos[known]]
    return ohe, attr


def _record(output, folder: RunDir, rows, windows, width, alphabet, n_windows) -> dict:
    ism = HYPOTHETICAL in rows.column_names
    methods = (
        sorted(set(rows.column("method").to_pylist())) if "method" in rows.column_names else []
    )
    return {
        "source": output,
        "windows": windows,
        "width": width,
        "n_windows": n_windows,
        "n_sequences": rows.num_rows,
        "alphabet": alphabet,
        "methods": methods,
        "scores": "ism hypothetical (extra_hypothetical)"
        if ism
        else "residue_attr on the residue's own letter (projected; no hypothetical scores)",
        "layout": "arr_0 [windows, letters, width] float32",
        "command": (
            f"modisco motifs -s {folder.uri_of('ohe.npz')} -a {folder.uri_of('attr.npz')} "
            f"-n 2000 -w {width} -o {folder.uri_of('modisco_results.h5')}"
        ),
    }


def _npz(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, arr_0=array)
    return buf.getvalue()


def _windows_tsv(rows: pa.Table, plan, width: int) -> str:
    ids = rows.column("id").to_pylist()
    lines = ["id\tstart\tend\tseqlet"]
    for j, centre, seqlet in plan:
        start = centre - width // 2
        lines.append(f"{ids[j]}\t{start}\t{start + width}\t{seqlet}")
    return "\n".join(lines) + "\n"


def describe(record: dict) -> str:
    """One line for the CLI."""
    scores = record["scores"].split(" (")[0]
    return (
        f"raysattr: {record['n_windows']} windows of {record['width']} ({record['windows']}, "
        f"{scores}); next: {record['command']}"
    )
