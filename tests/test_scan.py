"""Pre-flight scan (rows, labels, columns, duplicate ids), later copies as `duplicate_id` rows,
and exact resume by ids and positions. No Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.config import DataConfig, RunConfig
from raysattr.errors import InputError
from raysattr.io.results import ResumeKeys, resume_keys
from raysattr.io.scan import (
    duplicate_indices,
    hash_ids,
    mark_later_copies,
    position_key,
    scan_inputs,
)
from raysattr.io.sources import list_inputs, read_file
from raysattr.pipeline.skipped import CARRIER, SKIPPED, LimitStage, skip_done
from raysattr.pipeline.stages import read_files


def _parquet(path: Path, ids: list, labels: list | None = None) -> Path:
    columns = {"id": ids, "sequence": ["ACGTAC"] * len(ids)}
    columns["label"] = labels if labels is not None else [i % 2 for i in range(len(ids))]
    pq.write_table(pa.table(columns), path)
    return path


def _scan(folder: Path, **data):
    cfg = DataConfig(uri=str(folder), **data)
    return scan_inputs(list_inputs(str(folder)), cfg)


def _dup_folder(tmp_path: Path) -> Path:
    """a.parquet: x y x z; b.jsonl: y w x — later copies a:2 (x), b:0 (y), b:2 (x)."""
    folder = tmp_path / "data"
    folder.mkdir()
    _parquet(folder / "a.parquet", ["x", "y", "x", "z"])
    rows = [{"id": i, "sequence": "ACGTAC", "label": 0} for i in ("y", "w", "x")]
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


# ------------------------------------------------------------------------------ the scan
def test_scan_counts_rows_per_file(tmp_path):
    folder = _dup_folder(tmp_path)
    (folder / "c.fasta").write_text(">q\nACGT\n>\nACGT\n")
    scan = _scan(folder)
    a, b, c = (str(folder / n) for n in ("a.parquet", "b.jsonl", "c.fasta"))
    assert scan.rows_per_file == {a: 4, b: 3, c: 2}
    assert scan.total_rows == 9


def test_duplicates_within_and_across_files_in_file_then_row_order(tmp_path):
    folder = _dup_folder(tmp_path)
    a, b = str(folder / "a.parquet"), str(folder / "b.jsonl")
    scan = _scan(folder)
    assert scan.n_duplicate_ids == 3
    assert scan.later_copies == {
        a: {2: position_key(a, 0)},
        b: {0: position_key(a, 1), 2: position_key(a, 0)},
    }
    assert scan.first_copies == {a: frozenset({0, 1})}
    assert scan.duplicate_examples == [
        {"id": "x", "first": f"{a}:0", "later": f"{a}:2"},
        {"id": "y", "first": f"{a}:1", "later": f"{b}:0"},
        {"id": "x", "first": f"{a}:0", "later": f"{b}:2"},
    ]
    assert _scan(folder) == scan  # deterministic


def test_filled_ids_take_part_in_the_duplicate_check(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _parquet(folder / "a.parquet", [None, "a.parquet:0", "k"])
    scan = _scan(folder)
    path = str(folder / "a.parquet")
    assert scan.later_copies == {path: {1: position_key(path, 0)}}


def test_duplicate_indices_match_a_dictionary(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"id{v}" for v in rng.integers(0, 3000, 5000)]
    later, first = duplicate_indices(hash_ids(pa.array(ids)))
    seen: dict[str, int] = {}
    expected = []
    for i, v in enumerate(ids):
        if v in seen:
            expected.append((i, seen[v]))
        seen.setdefault(v, i)
    assert list(zip(later.tolist(), first.tolist(), strict=True)) == expected
    empty = duplicate_indices(np.zeros((0, 2), np.uint64))
    assert [len(x) for x in empty] == [0, 0]


def test_scan_checks_labels_in_every_file(tmp_path):
    folder = _dup_folder(tmp_path)
    _parquet(folder / "c.parquet", ["p", "q", "r"], [0.0, 1.0, 0.5])
    with pytest.raises(InputError, match=r"c\.parquet.*'label'.*row 2"):
        _scan(folder)


def test_scan_checks_columns_in_every_file(tmp_path):
    folder = _dup_folder(tmp_path)
    pq.write_table(pa.table({"id": ["p"], "seq": ["ACGT"], "label": [0]}), folder / "c.parquet")
    with pytest.raises(InputError, match=r"'sequence' not found.*c\.parquet.*present: id, seq"):
        _scan(folder)


def test_scan_checks_passthrough_columns(tmp_path):
    folder = _dup_folder(tmp_path)
    with pytest.raises(InputError, match=r"'batch' not found.*a\.parquet"):
        _scan(folder, passthrough_columns=["batch"])


def test_pretty_json_sidecar_in_the_folder_is_named(tmp_path):
    folder = _dup_folder(tmp_path)
    (folder / "meta.json").write_text('{\n  "rows": 7\n}\n')
    with pytest.raises(InputError) as err:
        _scan(folder)
    message = str(err.value)
    assert "meta.json" in message and "not a JSON Lines file" in message
    assert f"{folder}/*.parquet" in message


def test_scan_reads_csv_ids_and_labels_without_the_sequences(tmp_path):
    """The sequence column holds bytes that are not UTF-8: the scan never converts it."""
    path = tmp_path / "x.csv"
    path.write_bytes(b"id,sequence,label\na,AC\xffGT,1\nb,ACGT,0\na,ACGT,1\n")
    scan = scan_inputs(list_inputs(str(path)), DataConfig(uri=str(path)))
    assert scan.total_rows == 3 and scan.later_copies == {str(path): {2: f"{path}:0"}}


# ----------------------------------------------------------------- later copies as rows
def _cfg(folder: Path, policy: str) -> RunConfig:
    cfg = RunConfig()
    cfg.data = DataConfig(uri=str(folder), duplicate_ids=policy)
    return cfg


def _read_all(folder: Path, policy: str, **kwargs) -> list[dict]:
    """The rows `read_files` yields to be read (not the carriers of files already done)."""
    return _read_counted(folder, policy, **kwargs)[0]


def _read_counted(folder: Path, policy: str, **kwargs) -> tuple[list[dict], int, int]:
    """The rows to read, the rows counted as already written (`SKIPPED`), the carrier rows."""
    cfg = _cfg(folder, policy)
    batch = pa.table({"uri": [f.uri for f in list_inputs(str(folder))]})
    tables = list(read_files(batch, cfg, **kwargs))
    rows = pa.concat_tables(tables, promote_options="permissive").to_pylist() if tables else []
    skipped = sum(r.get(SKIPPED) or 0 for r in rows)
    real = [r for r in rows if r["read_code"] != CARRIER]
    return real, skipped, len(rows) - len(real)


def test_error_policy_turns_later_copies_into_duplicate_id_rows(tmp_path):
    folder = _dup_folder(tmp_path)
    scan = _scan(folder)
    rows = _read_all(folder, "error", later_copies=scan.later_copies)
    assert len(rows) == 7
    dups = [r for r in rows if r["read_code"] == "duplicate_id"]
    assert [(Path(r["source"]).name, r["source_row"]) for r in dups] == [
        ("a.parquet", 2),
        ("b.jsonl", 0),
        ("b.jsonl", 2),
    ]
    assert all(r["sequence"] is None for r in dups)
    assert f"{folder / 'a.parquet'}:1" in dups[1]["read_error"] and "'y'" in dups[1]["read_error"]
    assert all(r["read_code"] is None for r in rows if r not in dups)


def test_keep_policy_reads_every_copy(tmp_path):
    folder = _dup_folder(tmp_path)
    scan = _scan(folder)
    rows = _read_all(folder, "keep", later_copies=scan.later_copies)
    assert len(rows) == 7 and all(r["read_code"] is None for r in rows)
    assert all(r["sequence"] == "ACGTAC" for r in rows)


def test_read_files_default_arguments_read_everything(tmp_path):
    folder = _dup_folder(tmp_path)
    rows = _read_all(folder, "error")
    assert len(rows) == 7 and all(r["read_code"] is None for r in rows)


def test_mark_later_copies_leaves_other_rows_alone(tmp_path):
    path = _parquet(tmp_path / "a.parquet", ["x", "y", "x"])
    table = next(read_file(str(path), DataConfig(uri=str(path))))
    assert mark_later_copies(table, {}) is table
    marked = mark_later_copies(table, {2: "elsewhere:0"})
    assert marked.column("read_code").to_pylist() == [None, None, "duplicate_id"]
    assert marked.column("sequence").to_pylist() == ["ACGTAC", "ACGTAC", None]
    assert marked.schema == table.schema


# ------------------------------------------------------------------------------ resume
def _written(out: Path, rows: list[tuple], placed: bool = True) -> str:
    """An output whose attributions/ holds `rows` = (id, source, source_row)."""
    (out / "attributions").mkdir(parents=True)
    columns = {"id": [r[0] for r in rows], "status": ["ok"] * len(rows)}
    if placed:
        columns["source"] = [r[1] for r in rows]
        columns["source_row"] = pa.array([r[2] for r in rows], pa.int64())
    pq.write_table(pa.table(columns), out / "attributions" / "part-0001.parquet")
    return str(out)


def _positions(rows: list[dict]) -> list[tuple[str, int]]:
    return [(Path(r["source"]).name, r["source_row"]) for r in rows]


def test_resume_after_the_first_copy_writes_only_the_later_copies(tmp_path):
    folder = _dup_folder(tmp_path)
    a = str(folder / "a.parquet")
    scan = _scan(folder)
    # A run killed after writing a.parquet (rows 0-3; row 2 as a duplicate_id row).
    out = _written(tmp_path / "out", [("x", a, 0), ("y", a, 1), ("x", a, 2), ("z", a, 3)])
    keys = resume_keys(out)
    rows, skipped, carriers = _read_counted(
        folder,
        "error",
        resume=keys,
        later_copies=scan.later_copies,
        first_copies=scan.first_copies,
    )
    assert _positions(rows) == [("b.jsonl", 0), ("b.jsonl", 1), ("b.jsonl", 2)]
    assert [r["read_code"] for r in rows] == ["duplicate_id", None, "duplicate_id"]
    # a.parquet's 4 rows are all written: one carrier row counts them.
    assert (skipped, carriers) == (4, 1) and [r[SKIPPED] for r in rows] == [0, 0, 0]


def test_resume_after_only_a_later_copy_writes_the_first_copy(tmp_path):
    folder = _dup_folder(tmp_path)
    a, b = str(folder / "a.parquet"), str(folder / "b.jsonl")
    scan = _scan(folder)
    # b.jsonl finished first (its y, w, x), a.parquet not at all.
    out = _written(tmp_path / "out", [("y", b, 0), ("w", b, 1), ("x", b, 2)])
    rows, skipped, carriers = _read_counted(
        folder,
        "keep",
        resume=resume_keys(out),
        later_copies=scan.later_copies,
        first_copies=scan.first_copies,
    )
    assert _positions(rows) == [("a.parquet", i) for i in range(4)]
    assert a in rows[0]["source"]
    assert (skipped, carriers) == (3, 1)


def test_resume_skips_unique_ids_by_id_even_when_the_files_moved(tmp_path):
    folder = _dup_folder(tmp_path)
    scan = _scan(folder)
    out = _written(tmp_path / "out", [("z", "/elsewhere/a.parquet", 3), ("w", "/old/b.jsonl", 1)])
    rows, skipped, carriers = _read_counted(
        folder, "error", resume=resume_keys(out), later_copies=scan.later_copies
    )
    assert sorted(r["id"] for r in rows) == ["x", "x", "x", "y", "y"]
    # z (a.parquet's last row) and w (b.jsonl's row 1) ride on the rows read around them.
    assert [(r["id"], r[SKIPPED]) for r in rows] == [
        ("x", 0),
        ("y", 0),
        ("x", 1),
        ("y", 0),
        ("x", 1),
    ]
    assert (skipped, carriers) == (2, 0) and len(rows) + skipped == scan.total_rows


def test_resume_from_an_output_written_before_source_row(tmp_path):
    """Old outputs have no positions: every copy of an id already written counts as done."""
    folder = _dup_folder(tmp_path)
    scan = _scan(folder)
    out = _written(tmp_path / "out", [("x", None, None), ("z", None, None)], placed=False)
    keys = resume_keys(out)
    assert not keys.positions and keys.n_ids == 2
    assert keys.has_unplaced("x") and keys.has_unplaced("z") and not keys.has_unplaced("y")
    rows, skipped, _ = _read_counted(
        folder,
        "error",
        resume=keys,
        later_copies=scan.later_copies,
        first_copies=scan.first_copies,
    )
    assert sorted(r["id"] for r in rows) == ["w", "y", "y"]
    assert skipped == 4 and len(rows) + skipped == scan.total_rows


def test_skipped_rows_are_counted_once_across_chunks():
    """Each row read carries the done rows just before it, across the reader's chunks; the
    file's last row read also those after it; a file with nothing to read, one carrier row."""
    chunks = [[False, False, True], [False, False], [True, False], [False]]
    tables, start = [], 0
    for keep in chunks:
        rows = np.arange(start, start + len(keep))
        table = pa.table(
            {
                "id": [f"r{r}" for r in rows],
                "sequence": ["ACGT"] * len(keep),
                "source": ["f"] * len(keep),
                "source_row": rows,
                "read_error": pa.nulls(len(keep), pa.string()),
                "read_code": pa.nulls(len(keep), pa.string()),
            }
        )
        tables.append((table, pa.array(keep)))
        start += len(keep)
    read = pa.concat_tables(skip_done(tables))
    assert read.column("source_row").to_pylist() == [2, 5]
    assert read.column(SKIPPED).to_pylist() == [2, 4]  # r0 r1 | r3 r4, then r6 r7
    none = [(t, pa.array(np.zeros(t.num_rows, bool))) for t, _ in tables]
    (carrier,) = skip_done(none)
    assert carrier.to_pylist()[0] | {"sequence": "-"} == {
        "id": "r0",
        "sequence": "-",
        "source": "f",
        "source_row": 0,
        "read_error": carrier.column("read_error")[0].as_py(),
        "read_code": CARRIER,
        SKIPPED: 8,
    }
    assert carrier.column("sequence").null_count == 1
    # data.limit=3 over blocks as they arrive: 3 rows to read pass, carriers uncounted; the
    # counts of the rows dropped go on in a carrier, so no count is lost.
    limit = LimitStage(3)
    blocks = [read, carrier, pa.concat_tables([carrier, read, read]), read]
    passed = [limit(b) for b in blocks]
    assert [p.column("source_row").to_pylist() for p in passed] == [[2, 5], [0], [0, 2, 5], [2]]
    assert [p.column("read_code").to_pylist() for p in passed][2:] == [
        [CARRIER, None, CARRIER],
        [CARRIER],
    ]
    total = sum(pa.compute.sum(b.column(SKIPPED)).as_py() for b in blocks)
    assert sum(pa.compute.sum(p.column(SKIPPED)).as_py() for p in passed) == total == 40


def test_resume_keys_positions_are_position_keys(tmp_path):
    out = _written(tmp_path / "out", [("a", "s3://b/k/x.csv", 7), ("b", "/d/y.fa", 0)])
    keys = resume_keys(out)
    assert keys.has_id("a") and keys.has_id("b") and not keys.has_id("c") and keys.n_ids == 2
    assert not keys.unplaced_ids
    assert keys.has_position("s3://b/k/x.csv", 7) and keys.has_position("/d/y.fa", 0)
    assert not keys.has_position("/d/y.fa", 7) and not keys.has_position("s3://b/k/x.csv", 0)
    assert resume_keys(str(tmp_path / "nothing")).n_ids == 0


def test_resume_keys_in_pieces_equal_one_piece(tmp_path):
    """Pieces (one per group of part files, as the pipeline's tasks build them) give the same
    pending rows as the keys of the whole output."""
    out = tmp_path / "out"
    _written(out, [("x", "/d/a.pq", 0), ("y", "/d/a.pq", 1), ("z", "/d/a.pq", 3)])
    part = pq.read_table(out / "attributions" / "part-0001.parquet")
    pq.write_table(part.slice(0, 2), out / "attributions" / "part-0001.parquet")
    pq.write_table(part.slice(2), out / "attributions" / "part-0002.parquet")
    parts = sorted(str(p) for p in (out / "attributions").glob("*.parquet"))
    pieces = ResumeKeys.union([resume_keys(str(out), [p]) for p in parts])
    table = pa.table(
        {
            "id": ["x", "y", "x", "z", "w", "x"],
            "source": ["/d/a.pq"] * 6,
            "source_row": pa.array([0, 1, 2, 3, 4, 5], pa.int64()),
        }
    )
    later, first = {2: "/d/a.pq:0", 5: "/d/a.pq:0"}, frozenset({0})
    # x at 0 (a first copy) is done by its position; x at 2 and 5 were never written.
    expected = [False, False, True, False, True, True]
    assert pieces.pending(table, later, first).to_pylist() == expected
    assert resume_keys(str(out)).pending(table, later, first).to_pylist() == expected


# -------------------------------------------------------------------- tokenize read codes
def test_tokenize_uses_the_read_code(tmp_path):
    from raysattr.config import load
    from raysattr.pipeline.stages import TokenizeStage
    from raysattr.tokenize import build_kmer_vocab

    from .factories import save_random_bert

    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3))
    stage = TokenizeStage(load(None, [f"model.path={model}", "tokenize.k=3"]))
    row = stage._one(None, "duplicate id 'x': first copy at a:0", "duplicate_id")
    assert row.error_code == "duplicate_id" and "a:0" in row.error
    assert stage._one(None, "line 3 is not valid JSON: x", "invalid_record").error_code == (
        "invalid_record"
    )
    assert stage._one(None, "sequence is not UTF-8", None).error_code == "invalid_encoding"
    assert stage._one("ACGTAC", None, None).ok
