"""Benchmark: dataset statistics (`raysattr.stats.run.compute_statistics`) at two sizes, rows/s
and memory.

Run `.venv/bin/python benchmarks/aggregate.py` (100k vs 1M rows: 2 GB of temp files at 1M, about
5 CPU-minutes, 8-13 minutes on 2 shared cores) or `... --quick` (10k vs 100k, under a minute),
`--rows 20000,200000` for other sizes, `--profile` to run cProfile on the first size and print
where the time goes. Only one size's files exist at a time; all are deleted at the end.

Data, written to a temp dir with numpy/pyarrow one part file at a time (never all rows in
memory): `attributions/part-*.parquet` of `--rows-per-file` rows (default 512, the pipeline's
`compute.rows_per_block`, so a file is what one pipeline block writes; the statistics read one
batch per file, so this is also the batch size they really see), each row 300 DNA residues drawn
uniformly from ACGT. Columns as `raysattr.attribution.table` writes them, minus
`token_ids`/`token_attr` (the statistics never read them; parquet projection skips them, they
would only cost disk):
`id, label, pred, probs, target, method, status, error, sequence, n_tokens, length,
residue_attr (list<float32>), delta`. Half the rows (label 1) hold the motif `TATAATGCGC` at a
random position; background scores are N(0, 0.05) and motif residues score 1 + N(0, 0.1), so
seqlets, k-mer counts and enrichment all do real work. 2 % of predictions are flipped (label
and pred groups differ) and 0.2 % of rows are error rows (`attribution_failed`, null scores).

Each size is aggregated in a fresh subprocess with default `StatsConfig` (DNA, k 4-8, both
strands, the motif-level test) plus `stats.motif_database` (a MEME file of 40 random motifs and
the planted one, written here, so TOMTOM runs too; `--no-database` leaves it out), standalone
in-process loop, as `raysattr aggregate` runs without `RAY_ADDRESS`), so its `ru_maxrss` is that
size's peak RSS. A child that only imports the modules gives the baseline RSS. Printed per size:
wall seconds of `compute_statistics()` (split into pass 1, pass 2, and finalize + write),
rows/s, the
child's CPU seconds (user + system: what to compare when other work shares the cores), peak RSS
after pass 1, pass 2 and at the end, its growth over the baseline, the 1-minute load average
before and after, whether the planted motif ranks first, and the reported motifs (how many,
whether each is part of the planted one, the first one's database match); then the ratios
time(large)/time(small), wall and CPU (linear = the rows ratio; the fixed finalize cost makes it
a little less), and peak(large)/peak(small) (flat = 1). The files are read back from the page
cache (the machine has RAM to spare), so this measures compute, not disk.

On 2 shared cores wall times scale with the load: compare wall figures only at similar load
averages, CPU figures across loads.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.config import StatsConfig
from raysattr.stats.motifs import Motif, to_meme
from raysattr.stats.run import compute_statistics
from raysattr.stats.strands import reverse_complement

MOTIF = "TATAATGCGC"
LENGTH = 300
SEED = 0
ERROR_FRACTION = 0.002
FLIP_FRACTION = 0.02
F32_LIST = pa.list_(pa.float32())


# ------------------------------------------------------------------------------------ data
def synthetic_block(rng: np.random.Generator, first_id: int, n: int) -> pa.Table:
    """`n` attribution rows of `LENGTH` residues; label-1 rows hold `MOTIF` with high scores."""
    labels = (rng.random(n) < 0.5).astype(np.int64)
    letters = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (n, LENGTH), np.uint8)]
    scores = (rng.standard_normal((n, LENGTH), np.float32) * np.float32(0.05)).astype(np.float32)
    rows = np.flatnonzero(labels == 1)
    cols = rng.integers(0, LENGTH - len(MOTIF) + 1, len(rows))[:, None] + np.arange(len(MOTIF))
    letters[rows[:, None], cols] = np.frombuffer(MOTIF.encode(), np.uint8)
    scores[rows[:, None], cols] = 1.0 + 0.1 * rng.standard_normal(cols.shape, np.float32)
    preds = np.where(rng.random(n) < FLIP_FRACTION, 1 - labels, labels)
    failed = rng.random(n) < ERROR_FRACTION
    offsets = np.arange(0, (n + 1) * LENGTH, LENGTH, dtype=np.int32)
    probs = np.where(preds[:, None] == np.arange(2), 0.9, 0.1).astype(np.float32)
    return pa.table(
        {
            "id": pa.array([f"syn-{first_id + i:07d}" for i in range(n)], pa.string()),
            "label": pa.array(labels),
            "pred": pa.array(preds.astype(np.int32)),
            "probs": pa.ListArray.from_arrays(pa.array(offsets // LENGTH * 2), probs.ravel()),
            "target": pa.array(preds.astype(np.int32)),
            "method": pa.array(["lig"] * n, pa.string()),
            "status": pa.array(np.where(failed, "attribution_failed", "ok").tolist(), pa.string()),
            "error": pa.array([("synthetic failure" if f else None) for f in failed], pa.string()),
            "sequence": pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets), pa.py_buffer(letters.tobytes())
            ),
            "n_tokens": pa.array(np.full(n, LENGTH - 5, np.int32)),
            "length": pa.array(np.full(n, LENGTH, np.int32)),
            "residue_attr": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(scores.ravel()), type=F32_LIST, mask=pa.array(failed)
            ),
            "delta": pa.array(rng.standard_normal(n).astype(np.float32) * np.float32(1e-3)),
        }
    )


def write_attributions(out_dir: Path, n_rows: int, rows_per_file: int) -> int:
    """`out_dir/attributions/part-*.parquet` holding `n_rows` synthetic rows; returns bytes."""
    directory = out_dir / "attributions"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    written = 0
    for index, first in enumerate(range(0, n_rows, rows_per_file)):
        table = synthetic_block(rng, first, min(rows_per_file, n_rows - first))
        path = directory / f"part-{index:06d}.parquet"
        pq.write_table(table, path)
        written += path.stat().st_size
    return written


def write_database(path: Path) -> str:
    """A MEME database: 40 random DNA motifs of 6-14 columns and `PLANTED` (`MOTIF`)."""
    rng = np.random.default_rng(SEED)
    motifs = [
        Motif(f"RANDOM{i}", "", "", 0, rng.dirichlet(np.full(4, 0.4), int(w)), 20, 1.0)
        for i, w in enumerate(rng.integers(6, 15, 40))
    ]
    pwm = np.full((len(MOTIF), 4), 0.05)
    pwm[np.arange(len(MOTIF)), ["ACGT".index(c) for c in MOTIF]] = 0.85
    path.write_text(to_meme([*motifs, Motif("PLANTED", "", "", 0, pwm, 50, 1.0)], "dna"))
    return str(path)


# ------------------------------------------------------------------------------- children
def peak_rss_bytes() -> int:
    """This process's peak RSS (`ru_maxrss` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (robust to other load, unlike wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_map(marks: list[tuple[float, int]]) -> Callable:
    """`local_map` that notes the time and peak RSS when each pass's partials are computed."""

    def map_fn(func: Callable, items: list) -> Iterator:
        for item in items:
            yield func(item)
        marks.append((time.perf_counter(), peak_rss_bytes()))

    return map_fn


def child(spec: dict) -> dict:
    """Aggregate `spec["out"]` in this (fresh) process; figures for the parent."""
    out = {"load_before": os.getloadavg()[0], "rss_before": peak_rss_bytes()}
    if spec.get("import_only"):
        return out
    marks: list[tuple[float, int]] = []
    profile = cProfile.Profile() if spec.get("profile") else None
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if profile:
        profile.enable()
    cfg = StatsConfig(motif_database=spec.get("database"))
    stats = compute_statistics(spec["out"], cfg, map_fn=timed_map(marks))
    if profile:
        profile.disable()
    end = time.perf_counter()
    out.update(
        wall=end - start,
        cpu=cpu_seconds() - cpu_start,
        pass1=marks[0][0] - start,
        pass2=marks[1][0] - marks[0][0],
        finish=end - marks[1][0],
        peak_rss=peak_rss_bytes(),
        peak_pass1=marks[0][1],
        peak_pass2=marks[1][1],
        load_after=os.getloadavg()[0],
        rows=stats["rows"],
        n_seqlets=stats["n_seqlets"],
        top=top_motif(spec["out"]),
        motifs=reported_motifs(stats),
    )
    if profile:
        out["profile"] = profile_text(profile)
    return out


def top_motif(out: str) -> dict:
    """The first row of motif_stats.parquet and whether it is part of the planted motif."""
    first = pq.read_table(f"{out}/motif_stats.parquet").slice(0, 1).to_pylist()[0]
    ok = first["motif"] in MOTIF and first["k"] >= 6 and bool(first["significant"])
    return {"motif": first["motif"], "k": first["k"], "class": first["class"], "planted": ok}


def reported_motifs(stats: dict) -> dict:
    """How many motifs were reported, whether each is a piece of `MOTIF` (either strand), the
    first one's consensus and best database match."""
    consensi = [m["consensus"] for m in stats["motifs"]]
    planted = [c in MOTIF or MOTIF in c or reverse_complement(c) in MOTIF for c in consensi]
    first = stats["motifs"][0] if stats["motifs"] else {}
    match = (first.get("matches") or [{}])[0].get("id", "none")
    return {"n": len(consensi), "planted": all(planted), "first": first.get("consensus"),
            "match": match}  # fmt: skip


def profile_text(profile: cProfile.Profile, lines: int = 30) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(profile, stream=buffer)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return buffer.getvalue()


def run_child(spec: dict) -> dict:
    """`child(spec)` in a fresh Python process; its result (the last line it prints)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"child {spec} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ main
def measure_size(
    tmp: Path, n_rows: int, rows_per_file: int, profile: bool, database: str | None
) -> dict:
    """Write `n_rows` rows, aggregate them in a fresh process, delete them; the figures."""
    out = tmp / f"out-{n_rows}"
    start = time.perf_counter()
    data_bytes = write_attributions(out, n_rows, rows_per_file)
    generate = time.perf_counter() - start
    try:
        result = run_child({"out": str(out), "profile": profile, "database": database})
    finally:
        shutil.rmtree(out)
    result.update(n_rows=n_rows, data_bytes=data_bytes, generate=generate)
    result["files"] = -(-n_rows // rows_per_file)
    return result


HEADER = (
    f"{'rows':>10}{'files':>6}{'data MB':>8}{'gen s':>7}{'wall s':>8}{'rows/s':>8}"
    f"{'cpu s':>7}{'rows/cpu-s':>11}{'pass1 s':>8}{'pass2 s':>8}{'finish':>7}"
    f"{'peak p1/p2/end':>17}{'growth':>7}{'load':>11}  top k-mer; reported motifs"
)


def row_line(r: dict, baseline: int) -> str:
    n, top, mib = r["n_rows"], r["top"], 2**20
    mark = "planted, ok" if top["planted"] else "NOT the planted motif"
    return (
        f"{n:>10,}{r['files']:>6}{r['data_bytes'] / 1e6:8.0f}{r['generate']:7.1f}"
        f"{r['wall']:8.1f}{n / r['wall']:8.0f}{r['cpu']:7.1f}{n / r['cpu']:11.0f}"
        f"{r['pass1']:8.1f}{r['pass2']:8.1f}{r['finish']:7.1f}"
        f"{r['peak_pass1'] / mib:7.0f}{r['peak_pass2'] / mib:5.0f}{r['peak_rss'] / mib:5.0f}"
        f"{(r['peak_rss'] - baseline) / mib:7.0f}"
        f"{r['load_before']:6.2f}>{r['load_after']:<4.2f}  {top['motif']} (k={top['k']}, "
        f"class {top['class']}): {mark}; {motifs_text(r['motifs'])}"
    )


def motifs_text(m: dict) -> str:
    which = "all part of the planted one" if m["planted"] else "NOT all part of the planted one"
    return f"{m['n']} motif(s), {which}, first {m['first']} (database: {m['match']})"


def print_ratios(small: dict, large: dict, baseline: int) -> None:
    rows = large["n_rows"] / small["n_rows"]

    def ratio(key: str) -> float:
        return large[key] / small[key]

    growth = (large["peak_rss"] - baseline) / max(small["peak_rss"] - baseline, 1)
    print(
        f"\n{rows:.0f}x the rows (linear: x{rows:.0f}): wall time x{ratio('wall'):.2f} "
        f"(pass 1 x{ratio('pass1'):.2f}, pass 2 x{ratio('pass2'):.2f}), "
        f"CPU time x{ratio('cpu'):.2f} (per-row CPU cost x{ratio('cpu') / rows:.2f})"
    )
    print(
        f"peak RSS x{ratio('peak_rss'):.2f} (flat: x1), growth over the import-only baseline "
        f"x{growth:.2f}"
    )


def parse_rows(text: str) -> list[int]:
    """`"100000,1e6"` -> `[100000, 1000000]`; ValueError unless every size is a positive count."""
    try:
        sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"--rows: expected positive row counts like 100000,1000000; got {text!r}")
    return sizes


def parse_args() -> tuple[argparse.Namespace, list[int]]:
    """Command-line options and the sizes to measure (`--profile`: the first size only)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k vs 100k rows")
    parser.add_argument("--rows", help="comma-separated sizes (default 100000,1000000)")
    parser.add_argument("--rows-per-file", type=int, default=512, help="rows per part file")
    parser.add_argument("--profile", action="store_true", help="cProfile the first size only")
    parser.add_argument("--tmp-dir", help="where the part files go (default: system temp)")
    parser.add_argument("--no-database", action="store_true", help="no stats.motif_database")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        sizes = parse_rows(args.rows or ("10000,100000" if args.quick else "100000,1000000"))
    except ValueError as err:
        parser.error(str(err))
    if args.rows_per_file <= 0:
        parser.error(f"--rows-per-file: expected a positive row count; got {args.rows_per_file}")
    return args, sizes[:1] if args.profile else sizes


def main() -> None:
    args, sizes = parse_args()
    if args.child:
        return print(json.dumps(child(json.loads(args.child))))
    started = time.perf_counter()
    print(
        f"numpy {np.__version__}, pyarrow {pa.__version__}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; rows of {LENGTH} nt, {args.rows_per_file} rows per part file, "
        f"{MOTIF} in half the rows; StatsConfig defaults"
    )
    with tempfile.TemporaryDirectory(prefix="raysattr-bench-agg-", dir=args.tmp_dir) as tmp:
        baseline = run_child({"import_only": True})["rss_before"]
        print(f"import-only child: peak RSS {baseline / 2**20:.0f} MiB (the baseline)\n{HEADER}")
        database = None if args.no_database else write_database(Path(tmp) / "database.meme")
        results = []
        for n in sizes:
            results.append(measure_size(Path(tmp), n, args.rows_per_file, args.profile, database))
            print(row_line(results[-1], baseline), flush=True)
    if args.profile:
        print(results[0]["profile"])
    for small, large in zip(results, results[1:], strict=False):
        print_ratios(small, large, baseline)
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
