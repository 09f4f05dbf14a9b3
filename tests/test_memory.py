"""Bounded memory without losing exactness: the scan's hash-partitioned spill finds the same
duplicates as one sort of every hash, statistics batches are bounded by residues, and the write
tasks stream back one packed summary per block that merges to the per-row summary, and a run's
driver allocates Arrow memory with malloc (NOTES.md, "Flat driver memory")."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.io.scan import HashSpill, InputScan, duplicate_indices, hash_ids
from raysattr.pipeline.plan import driver_arrow_pool
from raysattr.pipeline.skipped import CARRIER, SKIPPED
from raysattr.pipeline.stages import WriteStage, write_block
from raysattr.pipeline.summary import PACKED, RunSummary
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


def written_rows(n: int, seed: int) -> pa.Table:
    """`n` rows as `AttributeStage` hands them to the write stage (summary and call columns):
    errors, unconverged rows, infinite deltas, several buckets and both fp32 flags."""
    rng = np.random.default_rng(seed)
    rel = rng.exponential(0.02, n)
    rel[rng.random(n) < 0.05] = np.inf
    status = rng.choice(["ok", "ok", "ok", "too_long"], n)
    return pa.table(
        {
            "id": [f"s{seed}-{i}" for i in range(n)],
            "source": ["in.parquet"] * n,
            "source_row": np.arange(n),
            "status": status,
            "delta_rel": rel,
            "n_steps": rng.choice([8, 16, 32], n),
            "converged": rel <= 0.05,
            "fp32_recomputed": rng.random(n) < 0.1,
            "bucket": rng.choice([16, 64, 256], n).astype(np.int32),
            "_engine_s": rng.random(n),
            "_tokens_evaluated": rng.integers(10, 300, n),
            "_tokens_padding": rng.integers(0, 10, n),
            SKIPPED: rng.integers(0, 3, n),
        }
    )


def test_packed_block_summaries_merge_to_the_row_summary_and_do_not_grow(tmp_path):
    table = written_rows(3000, seed=2)
    streamed, per_row, sizes = RunSummary(), RunSummary(), []
    for start, size in ((0, 7), (7, 493), (500, 2500)):  # blocks of uneven sizes
        block = table.slice(start, size)
        packed = write_block(block, str(tmp_path))
        assert packed.column_names == [PACKED] and packed.num_rows == 1
        streamed.add(packed)
        sizes.append(packed.nbytes)
        per_row.add(WriteStage(str(tmp_path))(block))  # what the driver used to receive
    scan = InputScan({}, table.num_rows, 0)
    assert streamed.finish(1.0, table.num_rows, scan, []) == per_row.finish(
        1.0, table.num_rows, scan, []
    )
    assert streamed.unconverged > 0 and len(streamed.buckets.totals) == 3
    assert streamed.skipped_done == pa.compute.sum(table.column(SKIPPED)).as_py() > 0
    # What the driver receives per block is bounded (WORST_ROWS ids), not ~200 bytes a row.
    assert sizes[2] < 3 * sizes[0] and sizes[2] < 3000


def test_skipped_rows_count_once_per_input_row_and_carriers_are_never_written(tmp_path):
    """`read + skipped_done + beyond_limit == input`: a row's count repeats on each target's
    row, a carrier row (a file already done) counts its rows and is not a row read."""
    block = written_rows(7, seed=3)
    block = block.set_column(2, "source_row", pa.array([0, 0, 1, 1, 4, 4, 0]))  # 2 targets
    block = block.set_column(1, "source", pa.array(["in.pq"] * 6 + ["done.pq"]))
    block = block.set_column(3, "status", pa.array(["ok"] * 6 + [CARRIER]))
    block = block.set_column(12, SKIPPED, pa.array([0, 0, 2, 2, 1, 1, 5]))
    summary = RunSummary()
    summary.add(write_block(block, str(tmp_path)))
    finished = summary.finish(1.0, 20, InputScan({}, 20, 0), [])
    rows = finished["rows"]
    assert (rows["read"], rows["skipped_done"], rows["beyond_limit"]) == (3, 8, 9)
    assert rows["read"] + rows["skipped_done"] + rows["beyond_limit"] == rows["input"]
    assert rows["out"] == rows["ok"] == 6 and CARRIER not in rows["error_by_code"]
    assert sum(b["rows"] for b in finished["length_buckets"]) == 6
    (part,) = (tmp_path / "attributions").glob("part-*.parquet")
    written = pq.read_table(part)
    assert written.num_rows == 6 and SKIPPED not in written.column_names
    assert set(written.column("source").to_pylist()) == {"in.pq"}


def test_driver_uses_arrow_system_pool_during_a_run_unless_the_user_chose_one(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool().backend_name
    with driver_arrow_pool():
        assert pa.default_memory_pool().backend_name == "system"
        kept = pa.array(list(range(1000)))  # allocated by malloc, freed after the switch back
    assert pa.default_memory_pool().backend_name == before
    assert kept.sum().as_py() == 499500
    del kept
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", before)
    with driver_arrow_pool():
        assert pa.default_memory_pool().backend_name == before
