"""Progress lines off a terminal (every N seconds, rate, ETA, a last line), statistics passes
counted through `tracked_map`, Ray's C++ log lines kept off stderr, and a real run whose output
holds raysattr's progress and none of Ray's dumps."""

from __future__ import annotations

import io
import os

import pyarrow.parquet as pq

from raysattr.config import load
from raysattr.pipeline.plan import run
from raysattr.pipeline.raylog import StderrFilter
from raysattr.progress import Progress, duration, tracked_map
from raysattr.stats.passes import local_map
from raysattr.tokenize import build_kmer_vocab

from .factories import dna_rows, save_random_bert


class Clock:
    """Seconds that tests move by hand (a pure input of `Progress`)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_n_seconds_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress("attribute", 1000, stream=out, live=False, every_s=30, clock=clock)
    clock.now += 9  # start-up: not counted in the rate
    progress.update(100)  # the first rows; 9 s since the last line (none): no line yet
    assert out.getvalue() == ""
    clock.now += 25
    progress.update(100)  # 34 s after the start: a line
    clock.now += 10
    progress.update(100)  # 10 s after that line: none
    clock.now += 25
    progress.update(200)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "raysattr: attribute: 200/1,000 rows (20 %), 4.0 rows/s, ETA 3:20, 0:34 elapsed",
        "raysattr: attribute: 500/1,000 rows (50 %), 6.7 rows/s, ETA 1:15, 1:09 elapsed",
        "raysattr: attribute: 500/1,000 rows (50 %), 6.7 rows/s, ETA 1:15, 1:09 elapsed",
    ]


def test_unknown_total_and_ticks_without_work():
    clock, out = Clock(), io.StringIO()
    with Progress("faithfulness", None, "tasks", out, False, 5, clock) as progress:
        for _ in range(12):
            clock.now += 1
            progress.tick()
    assert out.getvalue().splitlines() == [
        "raysattr: faithfulness: running, 0:05 elapsed",
        "raysattr: faithfulness: running, 0:10 elapsed",
        "raysattr: faithfulness: running, 0:12 elapsed",
    ]
    assert duration(3725) == "1:02:05" and duration(75.2) == "1:15"


def test_tracked_map_counts_each_pass_in_part_files():
    out = io.StringIO()
    groups = [["a", "b"], ["c"], ["d", "e", "f"]]
    tracked = tracked_map(local_map, "statistics", stream=out, live=False, every_s=3600)
    assert list(tracked(len, groups)) == [2, 1, 3]
    assert list(tracked(lambda g: g[0], groups)) == ["a", "c", "d"]
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "raysattr: statistics pass 1: 6/6 part files (100 %)",
        "raysattr: statistics pass 2: 6/6 part files (100 %)",
    ]


def test_stderr_filter_moves_ray_cpp_lines_to_the_log(tmp_path, capfd):
    log = tmp_path / "driver.log"
    cpp = b"[2026-11-22 11:47:16,173 E 23805 23805] core_worker.cc:2465: Actor with class ...\n"
    with StderrFilter(log):
        os.write(2, cpp)
        os.write(2, b"error: a line of our own\n")
    assert log.read_bytes() == cpp
    assert capfd.readouterr().err == "error: a line of our own\n"


def test_a_run_shows_progress_and_none_of_rays_dumps(ray_session, tmp_path, capfd):
    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3))
    pq.write_table(dna_rows(40), tmp_path / "in.parquet")
    overrides = [
        f"data.uri={tmp_path / 'in.parquet'}",
        f"model.path={model}",
        "tokenize.k=3",
        "attribution.method=saliency",
        f"output.uri={tmp_path / 'out'}",
        "compute.rows_per_block=16",
        "stats.enabled=false",
        "qc.enabled=false",
        "report.enabled=false",
    ]
    os.environ["RAYSATTR_PROGRESS_EVERY_S"] = "0"  # a line per result batch
    try:
        result = run(load(None, overrides))
    finally:
        del os.environ["RAYSATTR_PROGRESS_EVERY_S"]
    assert result.summary["rows"]["ok"] == 40
    err = capfd.readouterr().err
    assert "raysattr: attribute: 40/40 rows (100 %)" in err
    for noise in ("Total Progress", "core_worker.cc", "logging_progress", "Loading weights"):
        assert noise not in err
