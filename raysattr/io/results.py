"""Read back what a run wrote in `attributions/` (local or S3)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from raysattr.io.rundir import RunDir
from raysattr.io.scan import hash_ids, position_key


def attributions_dataset(output_uri: str) -> pads.Dataset | None:
    """A pyarrow dataset over the part files, schemas unified (blocks with only error rows lack
    the method's `extra_*` columns)."""
    out = RunDir(output_uri)
    files = out.part_files()
    if not files:
        return None
    fs = out.fs
    fragments = pads.dataset(files, format="parquet", filesystem=fs)
    schema = pa.unify_schemas([f.physical_schema for f in fragments.get_fragments()])
    return pads.dataset(files, format="parquet", filesystem=fs, schema=schema)


def read_attributions(output_uri: str, columns: list[str] | None = None) -> pa.Table:
    """The whole `attributions/` table (or some columns); empty table when nothing is written."""
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        return pa.table({})
    return dataset.to_table(columns=columns)


KEY = np.dtype([("hi", "<u8"), ("lo", "<u8")])  # a 128-bit hash, sortable field by field


def hash_keys(values: pa.Array) -> np.ndarray:
    """`scan.hash_ids` of string `values` as `KEY` records `[n]` (sortable, searchable)."""
    return np.ascontiguousarray(hash_ids(values)).view(KEY).reshape(-1)


def _sorted(keys: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.unique(keys),) if len(keys) else ()


def _member(keys: np.ndarray, sets: tuple[np.ndarray, ...]) -> np.ndarray:
    """Mask `[n]` of `keys` found in any of the sorted `sets`."""
    found = np.zeros(len(keys), bool)
    for values in sets:
        at = np.minimum(np.searchsorted(values, keys), len(values) - 1)
        found |= values[at] == keys
    return found


@dataclass(frozen=True)
class ResumeKeys:
    """What an output already holds, so that a resumed run writes each input row exactly once.

    Held as sorted 128-bit hashes (16 bytes a row, in pieces: one per group of part files, each
    built where it is read, e.g. in a Ray task whose result stays in the object store), never as
    strings on the driver. `union` joins pieces without copying them.

    Attributes:
        ids: hashes of the ids of the rows already written.
        positions: hashes of `scan.position_key(source, source_row)` of the rows already written.
        unplaced_ids: hashes of the ids of rows written without `source_row` (outputs from
            before it existed): their positions are unknown, so every copy counts as written.
    """

    ids: tuple[np.ndarray, ...] = field(default=(), repr=False)
    positions: tuple[np.ndarray, ...] = field(default=(), repr=False)
    unplaced_ids: tuple[np.ndarray, ...] = field(default=(), repr=False)

    @property
    def n_ids(self) -> int:
        """Distinct ids written (summed over pieces: an id written into two groups counts twice)."""
        return sum(len(v) for v in self.ids)

    @classmethod
    def union(cls, pieces: list[ResumeKeys]) -> ResumeKeys:
        return cls(*(sum((getattr(p, f) for p in pieces), ()) for f in _FIELDS))

    @classmethod
    def of_table(cls, table: pa.Table) -> ResumeKeys:
        """The keys of written rows (`id`, and `source`/`source_row` when present)."""
        ids = table.column("id")
        if not {"source", "source_row"} <= set(table.column_names):
            keys = hash_keys(ids)
            return cls(_sorted(keys), (), _sorted(keys))
        known = pc.and_(
            pc.is_valid(table.column("source")), pc.is_valid(table.column("source_row"))
        )
        positions = pc.binary_join_element_wise(
            table.column("source"), pc.cast(table.column("source_row"), pa.string()), ":"
        )  # the same string as `position_key`, built in Arrow
        return cls(
            _sorted(hash_keys(ids)),
            _sorted(hash_keys(positions.filter(known))),
            _sorted(hash_keys(ids.filter(pc.invert(known)))),
        )

    def has_id(self, row_id: str) -> bool:
        return bool(_member(hash_keys(pa.array([row_id])), self.ids)[0])

    def has_position(self, uri: str, row: int) -> bool:
        return bool(_member(hash_keys(pa.array([position_key(uri, row)])), self.positions)[0])

    def has_unplaced(self, row_id: str) -> bool:
        return bool(_member(hash_keys(pa.array([row_id])), self.unplaced_ids)[0])

    def pending(
        self, table: pa.Table, later: Mapping[int, str], first: AbstractSet[int]
    ) -> pa.BooleanArray:
        """Mask of the rows of `table` (one file's standard columns) not yet written; `later`
        and `first` are the file's later-copy and first-copy rows (`scan.InputScan`).

        A row whose id is unique in the input is done when its id is (so moving the files does
        not redo it); a copy of a duplicated id only when its own position is (so each copy is
        written once), or when its id was written without a position."""
        if not (self.ids or self.positions or self.unplaced_ids):
            return pa.array(np.ones(table.num_rows, bool))
        ids = hash_keys(table.column("id"))
        rows = table.column("source_row").to_numpy(zero_copy_only=False)
        duplicated = np.array([r in later or r in first for r in rows.tolist()], bool)
        done = ~duplicated & _member(ids, self.ids)
        if duplicated.any():
            where = np.flatnonzero(duplicated)
            uris = table.column("source").to_pylist()
            keys = pa.array([position_key(uris[i], int(rows[i])) for i in where])
            done[where] = _member(hash_keys(keys), self.positions) | _member(
                ids[where], self.unplaced_ids
            )
        return pa.array(~done)


_FIELDS = ("ids", "positions", "unplaced_ids")
RESUME_COLUMNS = ("id", "source", "source_row")


def resume_keys(output_uri: str, paths: list[str] | None = None) -> ResumeKeys:
    """The keys of the rows already written under `output_uri` (of the part files `paths`,
    default all), one part file at a time: reads only `id`, `source` and `source_row`."""
    out = RunDir(output_uri)
    paths = out.part_files() if paths is None else paths
    pieces = []
    for path in paths:
        with out.fs.open(path, "rb") as handle:
            pf = pq.ParquetFile(handle)
            names = [c for c in RESUME_COLUMNS if c in pf.schema_arrow.names]
            pieces.append(ResumeKeys.of_table(pf.read(columns=names)))
    merged = ResumeKeys.union(pieces)
    # One sorted array per field: searches cost one lookup, not one per part file.
    return ResumeKeys(
        *(
            _sorted(np.concatenate(getattr(merged, f))) if getattr(merged, f) else ()
            for f in _FIELDS
        )
    )


def counted_resume_keys(output_uri: str, paths: list[str]) -> tuple[ResumeKeys, int]:
    """`resume_keys` of some part files and how many ids they hold (a Ray task's two returns:
    the count reaches the driver, the keys stay in the object store)."""
    keys = resume_keys(output_uri, paths)
    return keys, keys.n_ids
