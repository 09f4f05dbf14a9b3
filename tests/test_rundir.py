"""The run folder's owner: lease (local and S3), staging commit and its crash recovery,
quarantine of unreadable part files. No Ray: these are the guarantees the pipeline builds on."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pytest

from raysattr.errors import LeaseHeldError, OutputError
from raysattr.io.lease import LEASE_FILE, is_stale
from raysattr.io.rundir import COMMIT_MARKER, TMP_PREFIX, RunDir

from .conftest import S3_BUCKET


@pytest.fixture(params=["local", "s3"])
def folder(request, tmp_path) -> RunDir:
    if request.param == "local":
        return RunDir(str(tmp_path / "out"))
    request.getfixturevalue("s3")
    return RunDir(f"s3://{S3_BUCKET}/rundir-{uuid.uuid4().hex[:8]}")


def _results(folder: RunDir, tag: str, ids: list[str]) -> None:
    folder.write_part(pa.table({"id": ids}))
    folder.write_json("summary.json", {"tag": tag})
    folder.write_text("report.html", f"<p>{tag}</p>")


def test_second_lease_is_refused_until_released(folder):
    first = folder.acquire_lease("run-1", ttl_s=60)
    with pytest.raises(LeaseHeldError, match="in use by run run-1"):
        folder.acquire_lease("run-2", ttl_s=60)
    first.release()
    assert not folder.exists(LEASE_FILE)
    folder.acquire_lease("run-2", ttl_s=60).release()


def test_stale_lease_is_taken_over_and_the_loser_notices(folder):
    old = {"run_id": "old", "host": "elsewhere", "pid": 1, "ttl_s": 120}
    folder.write_json(LEASE_FILE, old | {"heartbeat": time.time() - 500})
    assert is_stale(folder.read_json(LEASE_FILE))
    assert not is_stale(old | {"heartbeat": time.time() - 5})
    lease = folder.acquire_lease("new", ttl_s=60)
    assert folder.read_json(LEASE_FILE)["run_id"] == "new"
    folder.write_json(LEASE_FILE, folder.read_json(LEASE_FILE) | {"run_id": "thief"})
    with pytest.raises(OutputError, match="lost the output's lease"):
        lease.verify()


def test_commit_replaces_results_and_keeps_other_files(folder):
    _results(folder, "old", ["a", "b"])
    folder.write_text("my-notes.txt", "keep me")
    folder.write_text("layer_stats.parquet", "an old method's statistics")
    lease = folder.acquire_lease("r", ttl_s=60)
    staging = folder.staging("r")
    _results(staging, "new", ["c"])
    folder.commit(staging, lease)
    lease.release()
    assert folder.read_json("summary.json") == {"tag": "new"}
    assert len(folder.part_files()) == 1
    assert folder.read_bytes("my-notes.txt") == b"keep me"
    assert not folder.exists("layer_stats.parquet")  # an artifact the new run did not produce
    assert [n for n in folder.names() if n.startswith(".")] == []


def test_a_crash_during_the_swap_is_finished_by_the_next_lease(folder):
    _results(folder, "old", ["a"])
    staging = folder.staging("r")
    _results(staging, "new", ["b", "c"])
    staging.write_json(COMMIT_MARKER, {"names": ["attributions", "summary.json", "report.html"]})
    # the crash: old summary moved to trash, new summary moved in, nothing else yet
    trash = folder.child(".trash-r")
    folder.fs.makedirs(trash.root, exist_ok=True)
    folder.fs.mv(folder.path("summary.json"), trash.path("summary.json"))
    folder.fs.mv(staging.path("summary.json"), folder.path("summary.json"))
    folder.acquire_lease("next", ttl_s=60).release()
    assert folder.read_json("summary.json") == {"tag": "new"}
    assert folder.read_bytes("report.html") == b"<p>new</p>"
    assert len(folder.part_files()) == 1
    assert [n for n in folder.names() if n.startswith(".")] == []


def test_a_killed_runs_staging_is_dropped_and_results_stay(folder):
    _results(folder, "old", ["a"])
    _results(folder.staging("dead"), "half", ["b"])
    folder.acquire_lease("next", ttl_s=60).release()
    assert folder.read_json("summary.json") == {"tag": "old"}
    assert [n for n in folder.names() if n.startswith(".")] == []


def test_unreadable_part_is_quarantined(folder):
    _results(folder, "old", ["a"])
    torn = folder.part_files()[0]
    with folder.fs.open(torn, "wb") as handle:
        handle.write(b"PAR1 torn")
    moved = folder.quarantine_unreadable_parts()
    assert len(moved) == 1 and "/quarantine/part-" in moved[0]
    assert folder.part_files() == []


def test_probe_names_the_output_when_it_cannot_write(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="output.uri=.*file/out.*cannot write|cannot write"):
        RunDir(str(tmp_path / "file" / "out")).probe_writable()


def test_bad_json_names_the_file(tmp_path):
    folder = RunDir(str(tmp_path))
    folder.write_text("summary.json", "{nope")
    with pytest.raises(OutputError, match="summary.json is not valid JSON"):
        folder.read_json("summary.json")


def test_a_write_without_the_lease_is_refused_and_leaves_nothing(folder):
    # A killed driver's write tasks can finish after a resumed run took the lease over and read
    # which rows were done: fenced on the lease, their rows are not written a second time.
    block = pa.table({"id": ["a", "b"]})
    with pytest.raises(OutputError, match="run old no longer holds the output's lease"):
        folder.write_part(block, run_id="old")  # no lease at all
    lease = folder.acquire_lease("new", ttl_s=60)
    with pytest.raises(OutputError, match=r"\(run new does\)"):
        folder.write_part(block, run_id="old")
    assert folder.part_files() == []
    assert not [p for p in folder.fs.find(folder.root) if TMP_PREFIX in p]
    written = folder.write_part(block, run_id="new")
    assert folder.part_files() == [written]
    staging = folder.staging("new")  # a staging folder is its run's alone: no lease inside
    assert staging.write_part(block, run_id="new") in staging.part_files()
    lease.release()
