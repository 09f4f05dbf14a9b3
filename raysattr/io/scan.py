"""Pre-flight scan of every input file on the driver, before anything is cleared or Ray starts.

`scan_inputs` reads each file once with as little as it can (parquet: schema, id and label
columns; CSV: header, id and label columns; FASTA: headers; JSON Lines: every line, which must be
parsed anyway), so that a missing column, a bad label or an unreadable file fails the run in one
line before any work, and finds every duplicate id in the whole input.

Duplicates are found on 128-bit hashes of the ids (blake2b), not on the strings. Cost per row:
16 bytes held, about 0.8 µs of hashing on top of the parsing, and a sort of the hashes at the
end that peaks at about 50 bytes a row. Each later copy of an id then costs a dict entry (about
150 bytes). Measured on parquet (ids of 13 characters, 2 shared cores): 1.6 s for 1M rows, 4.5 s
for 3M; peak memory grows by 53 bytes per extra row over a fixed ~100 MiB of Arrow read buffers.
Two different ids colliding in 128 bits is not a practical concern.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.config import DataConfig
from raysattr.io.readers import INPUT_FORMATS, read_raw
from raysattr.io.sources import InputFile, columns_of, fill_ids, parse_labels, request_for

MAX_EXAMPLES = 20
DUPLICATE_ID = "duplicate_id"


def position_key(uri: str, row: int) -> str:
    """Where a record sits: `<uri>:<row>`, from its `source` and `source_row` columns."""
    return f"{uri}:{row}"


@dataclass
class InputScan:
    """What the scan found.

    Attributes:
        rows_per_file: records per file URI (broken records included).
        total_rows: records in all files.
        n_duplicate_ids: later copies: rows whose id an earlier row (in file order, then row
            order) already has.
        duplicate_examples: the first `MAX_EXAMPLES` later copies as `{"id", "first",
            "later"}` (positions as `position_key`s), ready for `summary.json`.
        later_copies: file URI -> {source_row of a later copy: position_key of its first copy}.
        first_copies: file URI -> source_rows of the first copies of duplicated ids.
    """

    rows_per_file: dict[str, int]
    total_rows: int
    n_duplicate_ids: int
    duplicate_examples: list[dict[str, str]] = field(default_factory=list)
    later_copies: dict[str, dict[int, str]] = field(default_factory=dict, repr=False)
    first_copies: dict[str, frozenset[int]] = field(default_factory=dict, repr=False)


def scan_inputs(files: list[InputFile], cfg: DataConfig) -> InputScan:
    """Check every file (readable, configured columns present, labels whole numbers) and find
    every duplicate id, in file order.

    Raises:
        InputError: the first problem found, naming the file (and the column, line or row).
    """
    counts, hashes = [], []
    for f in files:
        n = 0
        for ids in _file_ids(f.uri, cfg):
            hashes.append(hash_ids(ids))
            n += len(ids)
        counts.append(n)
    uris = [f.uri for f in files]
    all_hashes = np.concatenate(hashes) if hashes else np.zeros((0, 2), np.uint64)
    hashes.clear()  # before the sort: the chunks would double what the sort holds
    later, first = duplicate_indices(all_hashes)
    del all_hashes
    bounds = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    later_pos, first_pos = _positions(later, bounds), _positions(first, bounds)
    scan = InputScan(dict(zip(uris, counts, strict=True)), int(bounds[-1]), len(later))
    firsts: dict[str, set[int]] = {}
    for (lf, lr), (ff, fr) in zip(later_pos, first_pos, strict=True):
        scan.later_copies.setdefault(uris[lf], {})[lr] = position_key(uris[ff], fr)
        firsts.setdefault(uris[ff], set()).add(fr)
    scan.first_copies = {uri: frozenset(rows) for uri, rows in firsts.items()}
    scan.duplicate_examples = _examples(
        later_pos[:MAX_EXAMPLES], first_pos[:MAX_EXAMPLES], uris, cfg
    )
    return scan


def _file_ids(uri: str, cfg: DataConfig) -> Iterator[pa.Array]:
    """The file's ids (filled as `read_file` fills them), chunk by chunk; labels are checked."""
    req = request_for(uri, cfg, light=True)
    id_col = columns_of(INPUT_FORMATS[req.fmt], cfg)[0]
    offset = 0
    for table in read_raw(req):
        given = table[id_col] if id_col and id_col in table.column_names else None
        if cfg.label_column and cfg.label_column in table.column_names:
            parse_labels(table[cfg.label_column], uri, cfg.label_column, offset)
        yield fill_ids(given, uri, offset, table.num_rows)
        offset += table.num_rows


def hash_ids(ids: pa.Array) -> np.ndarray:
    """128-bit blake2b digests of the ids, `[n, 2]` uint64."""
    digest = b"".join(blake2b(i.encode(), digest_size=16).digest() for i in ids.to_pylist())
    return np.frombuffer(digest, dtype=np.uint64).reshape(-1, 2)


def duplicate_indices(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (of `hashes`, `[n, 2]`) that repeat an earlier row's hash, in ascending order, and
    for each the index of the first row with that hash; both int64 `[n_later]`."""
    n = len(hashes)
    order = np.lexsort((hashes[:, 1], hashes[:, 0]))  # stable: equal hashes keep row order
    ordered = hashes[order]
    same = np.zeros(n, bool)
    same[1:] = (ordered[1:, 0] == ordered[:-1, 0]) & (ordered[1:, 1] == ordered[:-1, 1])
    del ordered
    group_start = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
    later, first = order[same], order[group_start[same]]
    by_row = np.argsort(later, kind="stable")
    return later[by_row].astype(np.int64), first[by_row].astype(np.int64)


def _positions(indices: np.ndarray, bounds: np.ndarray) -> list[tuple[int, int]]:
    """Global row indices -> (file index, row within the file)."""
    files = np.searchsorted(bounds, indices, side="right") - 1
    return list(zip(files.tolist(), (indices - bounds[files]).tolist(), strict=True))


def _examples(
    later: list[tuple[int, int]], first: list[tuple[int, int]], uris: list[str], cfg: DataConfig
) -> list[dict[str, str]]:
    """The examples' ids, read back from the few files that hold them (the scan kept only
    hashes)."""
    wanted: dict[int, set[int]] = {}
    for f, r in later:
        wanted.setdefault(f, set()).add(r)
    ids = {f: _ids_at(uris[f], cfg, rows) for f, rows in wanted.items()}
    return [
        {
            "id": ids[lf][lr],
            "first": position_key(uris[ff], fr),
            "later": position_key(uris[lf], lr),
        }
        for (lf, lr), (ff, fr) in zip(later, first, strict=True)
    ]


def _ids_at(uri: str, cfg: DataConfig, rows: set[int]) -> dict[int, str]:
    found, offset, last = {}, 0, max(rows)
    for ids in _file_ids(uri, cfg):
        for r in rows:
            if offset <= r < offset + len(ids):
                found[r] = ids[r - offset].as_py()
        offset += len(ids)
        if offset > last:
            break
    return found


def mark_later_copies(table: pa.Table, later: Mapping[int, str]) -> pa.Table:
    """Turn the rows of `table` (one file's standard columns) whose `source_row` is a later copy
    (`later`: row -> first copy's position) into `duplicate_id` error rows, sequence null."""
    if not later:
        return table
    firsts = [later.get(r) for r in table.column("source_row").to_pylist()]
    if all(f is None for f in firsts):
        return table
    messages = pa.array(
        [
            None
            if f is None
            else f"duplicate id {i!r}: first copy at {f}; data.duplicate_ids=keep attributes both"
            for i, f in zip(table.column("id").to_pylist(), firsts, strict=True)
        ],
        pa.string(),
    )
    later_copy = pc.is_valid(messages)
    replaced = {
        "read_error": messages,
        "read_code": pa.scalar(DUPLICATE_ID, pa.string()),
        "sequence": pa.scalar(None, pa.string()),
    }
    for name, value in replaced.items():
        column = pc.if_else(later_copy, value, table.column(name))
        table = table.set_column(table.column_names.index(name), name, column)
    return table
