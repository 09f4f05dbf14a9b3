"""Bounded memory without losing exactness: the scan's hash-partitioned spill finds the same
duplicates as one sort of every hash, and statistics batches are bounded by residues."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.io.scan import HashSpill, duplicate_indices, hash_ids
from raysattr.stats.passes import file_batches


def test_spilled_partitions_find_the_same_duplicates_as_one_sort():
    rng = np.random.default_rng(1)
    ids = [f"id{v}" for v in rng.integers(0, 700, 2000)]
    hashes = hash_ids(pa.array(ids))
    with HashSpill(n_parts=8) as spill:
        for start in range(0, len(ids), 300):  # chunks as the readers yield them
            spill.add(hashes[start : start + 300])
        later, first = spill.duplicates()
    expected_later, expected_first = duplicate_indices(hashes)
    assert later.tolist() == expected_later.tolist() and first.tolist() == expected_first.tolist()
    assert len(later) == len(ids) - len(set(ids))


def test_statistics_batches_are_bounded_by_residues(tmp_path):
    lengths = [5, 300, 40, 40, 40, 2500, 10, 10, 700, 1]
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(len(lengths))],
            "status": ["ok"] * len(lengths),
            "residue_attr": [[0.5] * n for n in lengths],
        }
    )
    (tmp_path / "attributions").mkdir()
    path = tmp_path / "attributions" / "part-1.parquet"
    pq.write_table(table, path, row_group_size=3)
    batches = list(file_batches(str(path), str(tmp_path), 4, residues_per_batch=400))
    sizes = [[len(v) for v in b.column("residue_attr").to_pylist()] for b in batches]
    assert sizes == [[5, 300, 40, 40], [40], [2500], [10, 10], [700], [1]]
    rows_only = list(file_batches(str(path), str(tmp_path), 4))
    assert [b.num_rows for b in rows_only] == [4, 4, 2]
