"""Read back what a run wrote in `attributions/` (local or S3)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads

from raysattr.io.fs import filesystem


def attribution_files(output_uri: str) -> list[str]:
    """Paths of the finished part files (temporary files of a crashed writer are ignored)."""
    fs, root = filesystem(output_uri)
    directory = root.rstrip("/") + "/attributions"
    if not fs.exists(directory):
        return []
    return sorted(p for p in fs.find(directory) if p.rsplit("/", 1)[-1].startswith("part-"))


def attributions_dataset(output_uri: str) -> pads.Dataset | None:
    """A pyarrow dataset over the part files, schemas unified (blocks with only error rows lack
    the method's `extra_*` columns)."""
    files = attribution_files(output_uri)
    if not files:
        return None
    fs, _ = filesystem(output_uri)
    fragments = pads.dataset(files, format="parquet", filesystem=fs)
    schema = pa.unify_schemas([f.physical_schema for f in fragments.get_fragments()])
    return pads.dataset(files, format="parquet", filesystem=fs, schema=schema)


def read_attributions(output_uri: str, columns: list[str] | None = None) -> pa.Table:
    """The whole `attributions/` table (or some columns); empty table when nothing is written."""
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        return pa.table({})
    return dataset.to_table(columns=columns)


def existing_ids(output_uri: str) -> frozenset:
    """Ids already written (resume skips them); reads only the `id` column."""
    table = read_attributions(output_uri, ["id"])
    return frozenset(table.column("id").to_pylist()) if table.num_columns else frozenset()
