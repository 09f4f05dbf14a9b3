"""Read back what a run wrote in `attributions/` (local or S3)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from raysattr.io.rundir import RunDir
from raysattr.io.scan import position_key


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


@dataclass(frozen=True)
class ResumeKeys:
    """What an output already holds, so that a resumed run writes each input row exactly once.

    Attributes:
        ids: ids of the rows already written.
        positions: `scan.position_key(source, source_row)` of the rows already written.
        unplaced_ids: ids of rows written without `source_row` (outputs from before it existed):
            their positions are unknown, so every copy of such an id counts as written.
    """

    ids: frozenset[str] = field(default=frozenset(), repr=False)
    positions: frozenset[str] = field(default=frozenset(), repr=False)
    unplaced_ids: frozenset[str] = field(default=frozenset(), repr=False)

    def is_done(self, row_id: str, uri: str, row: int, duplicated: bool) -> bool:
        """Whether the input row at (`uri`, `row`) is already written. A row whose id is unique
        in the input is done when its id is (so moving the files does not redo it); a copy of a
        duplicated id only when its own position is (so each copy is written once)."""
        if not duplicated:
            return row_id in self.ids
        return position_key(uri, row) in self.positions or row_id in self.unplaced_ids

    def pending(
        self, table: pa.Table, later: Mapping[int, str], first: AbstractSet[int]
    ) -> pa.BooleanArray:
        """Mask of the rows of `table` (one file's standard columns) not yet written; `later`
        and `first` are the file's later-copy and first-copy rows (`scan.InputScan`)."""
        uri_of = table.column("source").to_pylist()
        keep = [
            not self.is_done(i, u, r, r in later or r in first)
            for i, u, r in zip(
                table.column("id").to_pylist(),
                uri_of,
                table.column("source_row").to_pylist(),
                strict=True,
            )
        ]
        return pa.array(keep, pa.bool_())


def resume_keys(output_uri: str) -> ResumeKeys:
    """The ids and positions already written under `output_uri` (reads only `id`, `source` and
    `source_row`; the sets cost about 100 bytes a row plus the strings)."""
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        return ResumeKeys()
    placed = {"source", "source_row"} <= set(dataset.schema.names)
    table = dataset.to_table(columns=["id", "source", "source_row"] if placed else ["id"])
    ids = table.column("id")
    if not placed:
        return ResumeKeys(frozenset(ids.to_pylist()), frozenset(), frozenset(ids.to_pylist()))
    known = pc.and_(pc.is_valid(table.column("source")), pc.is_valid(table.column("source_row")))
    keys = pc.binary_join_element_wise(
        table.column("source"), pc.cast(table.column("source_row"), pa.string()), ":"
    )  # the same string as `position_key`, built in Arrow
    return ResumeKeys(
        ids=frozenset(ids.to_pylist()),
        positions=frozenset(keys.filter(known).to_pylist()),
        unplaced_ids=frozenset(ids.filter(pc.invert(known)).to_pylist()),
    )
