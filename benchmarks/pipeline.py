"""Benchmark: the Ray Data pipeline against the engine alone, 1 vs 2 actors, driver memory.

`.venv/bin/python benchmarks/pipeline.py`: 8-14 minutes on 2 cores (the longer when shared);
`--quick`: about 3. One process, except the memory section (a fresh subprocess per size).
`--length-routing [--quick]`: only the length routing section (pipeline_routing.py).

Data and model, built in a temp dir: seeded DNA rows of 40-80 nt from `raysattr.demo.generate` in
one parquet file; a random-weight BERT of the demo model's shape (hidden 64, 2 layers, 4 heads,
intermediate 128), DNABERT k=6 vocabulary, saved with `save_pretrained`. Every `run()` has
statistics, faithfulness and report disabled; `postrun.post_run_chain` times them afterwards,
one by one.

- **overhead** per method (`lig`, 8 steps: compute dominates; `saliency`: the pipeline's own
  costs do): (a) *engine alone*: `AttributionEngine.run` only, in the driver, in calls of
  `rows_per_call` rows, torch on 1 thread (an actor with `cpus_per_actor=1` gets
  `OMP_NUM_THREADS=1`); (b) *stages serially*: the pipeline's stage classes in a loop in the
  driver, no Ray; (c) `raysattr.pipeline.plan.run(cfg)`, 1 actor: *cold* = `init_ray` + first
  `run()`, *warm* = a later `run()` (every `run()` still starts its actor pools and loads the
  model). `run()` gets a `RunSummary` subclass that notes when each result batch (one per block)
  arrives: *streaming* = rows/s from the first batch to the final burst (the steady state),
  *fixed cost* = warm seconds - N / streaming, hence the size from which overhead <= 10 %.
  `x engine` = seq/s over the engine's (target >= 0.91). Best of 2, interleaved.
- **actors**: warm `run()` with `min_actors = max_actors = 2` against 1 actor. Both actors, the
  tokenize and write actors and the driver share the 2 cores: the ceiling is 2x.
- **memory** (`saliency`, 10k vs 100k rows): Ray started, the RSS high-water mark reset
  (`/proc/self/clear_refs`), `run()`, then `VmHWM`; the same around each step `run()` ends
  with, and around a `resume` run() of the finished output (all ids read into `done_ids`, every
  row skipped). `id set`: tracemalloc size of a set of `"{id}\\x00{target}"` keys like the one
  `RunSummary` keeps for the duplicate check.

On 2 cores other processes distort timings badly: the load average is printed per section.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow.parquet as pq
import ray
import torch
from transformers.utils import logging as hf_logging

from raysattr.config import RunConfig, load
from raysattr.demo import DatasetSpec, generate, write
from raysattr.io.sources import list_inputs, read_file
from raysattr.pipeline import plan
from raysattr.pipeline.plan import init_ray, run
from raysattr.pipeline.postrun import post_run_chain
from raysattr.pipeline.stages import AttributeStage, TokenizeStage, WriteStage, rows_from_table
from raysattr.pipeline.summary import RunSummary
from raysattr.tokenize import build_kmer_vocab

K = 6
SEED = 0
LENGTHS = (40, 80)  # nucleotides (35-75 k-mers): short, so that 100k rows fit in minutes
ROWS_PER_CALL, ROWS_PER_BLOCK = 256, 512
MIN_BATCHES = 4  # result batches (one per block) before the final burst, for a streaming rate
BURST_S = 0.25  # result batches this close to the last one form the final burst


@dataclass(frozen=True)
class Workload:
    """A method and how many rows it is timed on."""

    method: str
    n_steps: int
    n_rows: int


@dataclass(frozen=True)
class Sizes:
    workloads: tuple[Workload, ...]  # the first one is also the 1 vs 2 actors comparison
    memory_rows: tuple[int, int]
    repeats: int


def sizes(quick: bool) -> Sizes:
    if quick:
        return Sizes((Workload("lig", 8, 600), Workload("saliency", 1, 6_000)), (2_000, 20_000), 1)
    return Sizes((Workload("lig", 8, 4_000), Workload("saliency", 1, 20_000)), (10_000, 100_000), 2)


# ----------------------------------------------------------------------------- data and model
def save_model(out_dir: Path) -> Path:
    """A random-weight tiny `BertForSequenceClassification` + DNABERT k-mer tokenizer."""
    from pipeline_routing import save_random_bert  # benchmarks/ is sys.path[0] for scripts

    return save_random_bert(out_dir, build_kmer_vocab(K), 128, SEED)


def write_dataset(directory: Path, n_rows: int, seed: int) -> str:
    """`n_rows` demo-style DNA rows (motif planted in the positives) as one parquet file."""
    spec = DatasetSpec("dna", n_rows, *LENGTHS, seed=seed)
    return write(generate(spec), directory / f"dna-{n_rows}-{seed}.parquet", "parquet")


def make_config(model_dir, data_uri: str, out_uri: str, w: Workload, actors: int = 1) -> RunConfig:
    """The run config: `w`'s method, `actors` actors of 1 CPU, output overwritten."""
    overrides = {
        "data.uri": data_uri,
        "tokenize.scheme": "kmer",
        "tokenize.k": K,
        "model.path": model_dir,
        "attribution.method": w.method,
        "attribution.n_steps": w.n_steps,
        "attribution.adaptive_steps": "false",
        "compute.min_actors": actors,
        "compute.max_actors": actors,
        "compute.cpus_per_actor": 1,
        "compute.rows_per_call": ROWS_PER_CALL,
        "compute.rows_per_block": ROWS_PER_BLOCK,
        "output.uri": out_uri,
        "output.mode": "overwrite",
        # The steps run() ends with, timed on their own by `timed_finish`:
        "stats.enabled": "false",
        "qc.enabled": "false",
        "report.enabled": "false",
    }
    return load(None, [f"{k}={v}" for k, v in overrides.items()])


# ------------------------------------------------------------------------------ no Ray
@dataclass
class SerialTimes:
    """Seconds of each stage run in a loop in the driver (field-wise best over repeats)."""

    read_tokenize: float = 0.0
    engine: float = 0.0  # `engine.run` alone
    tables: float = 0.0  # rows_from_table + results_to_table around it
    write: float = 0.0

    @property
    def total(self) -> float:
        return self.read_tokenize + self.engine + self.tables + self.write

    def best(self, other: SerialTimes | None) -> SerialTimes:
        if other is None:
            return self
        return SerialTimes(
            *(min(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))
        )


def run_serially(cfg: RunConfig, threads: int, out_dir: Path) -> SerialTimes:
    """The pipeline's stages called in the driver on `threads` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = SerialTimes()
    try:
        start = time.perf_counter()
        tokenize = TokenizeStage(cfg)
        tables = [
            tokenize(t) for f in list_inputs(cfg.data.uri) for t in read_file(f.uri, cfg.data)
        ]
        times.read_tokenize = time.perf_counter() - start
        attribute, writer = AttributeStage(cfg, "bench"), WriteStage(str(out_dir))
        attribute.engine.run(rows_from_table(tables[0].slice(0, 32)))  # warm-up, untimed
        _time_engine_calls(attribute, times)
        for table in tables:
            for offset in range(0, table.num_rows, cfg.compute.rows_per_call):
                begin = time.perf_counter()
                results = attribute(table.slice(offset, cfg.compute.rows_per_call))
                middle = time.perf_counter()
                writer(results)
                times.tables += middle - begin
                times.write += time.perf_counter() - middle
        times.tables -= times.engine
    finally:
        torch.set_num_threads(previous)
    return times


def _time_engine_calls(stage: AttributeStage, times: SerialTimes) -> None:
    """Wrap `stage.engine.run` so that its seconds add up in `times.engine`."""
    inner = stage.engine.run

    def timed(*args):
        begin = time.perf_counter()
        result = inner(*args)
        times.engine += time.perf_counter() - begin
        return result

    stage.engine.run = timed


# -------------------------------------------------------------------------------- with Ray
@dataclass
class RunTiming:
    """One `run()`: wall seconds; seconds to its first result batch (start-up) and after its
    last (shutdown); streaming rate: see `streaming_rate`."""

    seconds: float
    first: float
    tail: float
    rate: float  # NaN under MIN_BATCHES result batches

    def best(self, other: RunTiming | None) -> RunTiming:
        return self if other is None else min(self, other, key=lambda t: t.seconds)


@contextmanager
def result_arrivals() -> Iterator[list[tuple[float, int]]]:
    """Record `(time, input rows)` of every result batch `run()` receives (a block's packed
    summary), by handing it a `RunSummary` subclass whose `add` notes them."""
    arrivals: list[tuple[float, int]] = []

    class TimedSummary(RunSummary):
        def add(self, batch) -> None:
            now, before = time.perf_counter(), self.rows_read
            super().add(batch)
            arrivals.append((now, self.rows_read - before))

    plan.RunSummary = TimedSummary
    try:
        yield arrivals
    finally:
        plan.RunSummary = RunSummary


def timed_run(cfg: RunConfig) -> RunTiming:
    """Time one `run(cfg)`; fails when a row is missing, an error or a duplicate."""
    with result_arrivals() as arrivals:
        start = time.perf_counter()
        result = run(cfg)
        seconds = time.perf_counter() - start
    rows = result.summary["rows"]
    expected = pq.read_metadata(cfg.data.uri).num_rows
    if rows["error"] or rows["n_duplicate_ids"] or rows["out"] != expected:
        raise RuntimeError(f"run() on {cfg.data.uri}: {result.one_line()}")
    first, last = arrivals[0][0] - start, arrivals[-1][0] - start
    return RunTiming(seconds, first, seconds - last, streaming_rate(arrivals))


def streaming_rate(arrivals: list[tuple[float, int]]) -> float:
    """Rows/s from the first result batch to the last one before the final burst: Ray Data hands
    the last blocks over together, sooner than their turn. NaN when too few batches are left."""
    times = [t for t, _ in arrivals]
    end = len(times)  # arrivals[:end] are kept
    while end > 1 and times[-1] - times[end - 1] < BURST_S:
        end -= 1
    if end < MIN_BATCHES:
        return float("nan")
    return sum(n for _, n in arrivals[1:end]) / (times[end - 1] - times[0])


def timed_finish(cfg: RunConfig, base_rss: int | None = None) -> dict[str, tuple[float, int]]:
    """The steps `run()` ends with when enabled (statistics, faithfulness, report), one at a time
    in its order over `cfg`'s finished output: `{step: (seconds, peak RSS - base_rss)}`, the
    peak measured only when `base_rss` is given."""
    steps = ("stats", "qc", "report")
    out = {}
    for step in steps:
        only = copy.deepcopy(cfg)
        for other in steps:
            getattr(only, other).enabled = other == step
        if base_rss is not None:
            reset_peak()
        start = time.perf_counter()
        post_run_chain(only, only.output.uri)
        peak = status_bytes("VmHWM") - base_rss if base_rss is not None else 0
        out[step] = (time.perf_counter() - start, peak)
    return out


# ------------------------------------------------------------------------------- printing
def line(name: str, seconds: float | None, rate: float, ratio: float, extra: str = "") -> str:
    shown = f"{seconds:8.1f}" if seconds is not None else " " * 8
    return f"  {name:<46}{shown}{rate:9.0f}{ratio:10.2f}{extra}"


def print_overhead(n: int, serial: SerialTimes, warm: RunTiming, cold: float, after: dict):
    e, total = serial.engine, serial.total
    print(f"  {'':<46}{'seconds':>8}{'seq/s':>9}{'x engine':>10}")
    print(line("(a) engine alone (driver, 1 thread)", e, n / e, 1.0))
    parts = f"read+tokenize {serial.read_tokenize:.1f}, tables {serial.tables:.1f}"
    parts += f", write {serial.write:.1f}"
    print(line("(b) stages serially, no Ray", total, n / total, e / total, f"   {parts}"))
    if cold == cold:  # not NaN: this section started Ray
        print(line("(c) cold: init_ray + first run()", cold, n / cold, e / cold))
    print(line("(c) warm run()", warm.seconds, n / warm.seconds, e / warm.seconds))
    full = warm.seconds + sum(seconds for seconds, _ in after.values())
    steps = ", ".join(f"{step} {seconds:.1f}" for step, (seconds, _) in after.items())
    print(line("    + the steps run() ends with", full, n / full, e / full, f"   {steps} s"))
    print(line("    streaming (steady state, result batches)", None, warm.rate, warm.rate * e / n))
    print(f"  warm run(): first result after {warm.first:.1f} s, {warm.tail:.1f} s after the last")
    if warm.rate != warm.rate:  # NaN
        print(f"  too few result batches (< {MIN_BATCHES}) for a streaming rate")
        return
    fixed = warm.seconds - n / warm.rate  # start-up (actor pools, model load) and shutdown
    rate = n / e
    need = 0.9 * fixed / (1 / rate - 0.9 / warm.rate) if warm.rate > 0.9 * rate else float("inf")
    print(f"  fixed cost per run() {fixed:.1f} s -> overhead <= 10 % from about {need:,.0f} rows")


def print_actors(n: int, one: RunTiming, two: RunTiming) -> None:
    print(f"  {'':<46}{'seconds':>8}{'seq/s':>9}{'speedup':>10}")
    print(line("warm run(), 1 actor", one.seconds, n / one.seconds, 1.0))
    print(line("warm run(), 2 actors", two.seconds, n / two.seconds, one.seconds / two.seconds))
    print(line("streaming, 1 actor", None, one.rate, 1.0))
    print(line("streaming, 2 actors", None, two.rate, two.rate / one.rate))
    print(f"  1 -> 2 actors: first result after {one.first:.1f} -> {two.first:.1f} s")


MEMORY_COLUMNS = {  # key in the memory child's figures: header
    "peak": "run() peak+",
    "held": "held+",
    "stats": "stats+",
    "qc": "qc+",
    "report": "report+",
    "resume": "resume+",
    "id_set": "id set",
}


def print_memory(results: list[dict]) -> None:
    """The memory children's figures in MiB, and what grows per row."""
    heads = "".join(f"{h:>12}" for h in MEMORY_COLUMNS.values())
    print(f"  {'rows':>8}{'RSS':>6}{heads}{'seq/s':>7}   (MiB; + = peak growth over RSS)")
    for r in results:
        mib = "".join(f"{r[k] / 2**20:12.1f}" for k in MEMORY_COLUMNS)
        print(f"  {r['n_rows']:>8,}{r['rss'] / 2**20:6.0f}{mib}{r['n_rows'] / r['seconds']:7.0f}")
    small, large = results
    extra = large["n_rows"] - small["n_rows"]
    grown = ", ".join(f"{k} {(large[k] - small[k]) / extra:.0f}" for k in MEMORY_COLUMNS)
    ratio = large["peak"] / max(small["peak"], 1)
    print(f"  {large['n_rows'] / small['n_rows']:.0f}x the rows: run() peak growth x{ratio:.2f}")
    print(f"  bytes per extra row: {grown}")
    steps = ", ".join(
        f"{k} {small[k + '_s']:.1f} / {large[k + '_s']:.1f}" for k in ("stats", "qc", "report")
    )
    print(f"  seconds of the steps run() ends with, small / large: {steps}")


# --------------------------------------------------------------------------------- memory
def status_bytes(field: str) -> int:
    """`VmRSS` / `VmHWM` (peak RSS) of this process from /proc/self/status (Linux)."""
    text = Path("/proc/self/status").read_text()
    return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def reset_peak() -> int:
    """Reset the RSS high-water mark (Linux >= 4.0); returns the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def id_set_bytes(data_uri: str) -> int:
    """Bytes (tracemalloc) of a set of `"{id}\\x00{target}"` keys over the data set, as
    `RunSummary` keeps for the duplicate check."""
    ids = pq.read_table(data_uri, columns=["id"]).column("id").to_pylist()
    tracemalloc.start()
    keys = {f"{row_id}\x00{0}" for row_id in ids}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keys
    return size


def memory_child(spec: dict) -> None:
    """In a fresh process: driver memory of run(), of each step it ends with, and of a resume
    run() over the finished output; writes the figures (bytes) to `spec["result"]`."""
    quiet()
    n = spec["n_rows"]
    w = Workload("saliency", 1, n)
    cfg = make_config(spec["model_dir"], spec["data_uri"], spec["out_uri"], w)
    init_ray(None)
    rss = reset_peak()
    out = {"n_rows": n, "seconds": timed_run(cfg).seconds, "rss": rss}
    out["peak"], out["held"] = status_bytes("VmHWM") - rss, status_bytes("VmRSS") - rss
    for step, (seconds, peak) in timed_finish(cfg, base_rss=rss).items():
        out[step], out[f"{step}_s"] = peak, seconds  # peaks include what run() held
    cfg.output.mode = "resume"
    resume_rss = reset_peak()
    result = run(cfg)
    if result.summary["rows"]["skipped_done"] != n or result.summary["rows"]["out"]:
        raise RuntimeError(f"resume did not skip every row: {result.one_line()}")
    out["resume"] = status_bytes("VmHWM") - resume_rss
    ray.shutdown()
    out["id_set"] = id_set_bytes(spec["data_uri"])
    Path(spec["result"]).write_text(json.dumps(out))


def measure_memory(model_dir: Path, tmp: Path, n_rows: int) -> dict:
    """Run `memory_child` for `n_rows` rows in a fresh Python process; its figures."""
    spec = {
        "n_rows": n_rows,
        "model_dir": str(model_dir),
        "data_uri": write_dataset(tmp / "data", n_rows, SEED + 2),
        "out_uri": str(tmp / f"out-memory-{n_rows}"),
        "result": str(tmp / f"memory-{n_rows}.json"),
    }
    subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)], check=True)
    return json.loads(Path(spec["result"]).read_text())


# ------------------------------------------------------------------- memory at scale
SCALE_LENGTHS = (24, 40)  # nucleotides: short rows, so that 1M rows run in minutes


def scale_child(spec: dict) -> None:
    """In a fresh process: driver peak RSS of an overwrite `run()` (saliency, post-run steps
    off) over `spec["n_rows"]` rows, then of a resume `run()` over the finished output (every
    row skipped by the resume keys); writes the figures (bytes, seconds) to `spec["result"]`."""
    quiet()
    n = spec["n_rows"]
    cfg = make_config(
        spec["model_dir"], spec["data_uri"], spec["out_uri"], Workload("saliency", 1, n)
    )
    start = time.perf_counter()
    init_ray(None)
    out = {"n_rows": n, "init_s": time.perf_counter() - start}
    rss = out["rss"] = reset_peak()
    start = time.perf_counter()
    result = run(cfg)
    out["seconds"] = time.perf_counter() - start
    if result.summary["rows"]["out"] != n or result.summary["rows"]["error"]:
        raise RuntimeError(f"run() on {n} rows: {result.one_line()}")
    out["peak"], out["held"] = status_bytes("VmHWM") - rss, status_bytes("VmRSS") - rss
    cfg.output.mode = "resume"
    resume_rss = reset_peak()
    start = time.perf_counter()
    result = run(cfg)
    out["resume_s"] = time.perf_counter() - start
    if result.summary["rows"]["skipped_done"] != n or result.summary["rows"]["out"]:
        raise RuntimeError(f"resume did not skip every row: {result.one_line()}")
    out["resume"] = status_bytes("VmHWM") - resume_rss
    ray.shutdown()
    Path(spec["result"]).write_text(json.dumps(out))


def memory_scale(sizes: list[int]) -> None:
    """Driver peak memory growth from the smallest to the largest size (issue 15: <= 20 MiB
    from 100k to 1M rows), one fresh process per size; data and outputs in a temp dir."""
    print(
        f"== driver memory at scale: saliency, 1 actor, rows of {SCALE_LENGTHS[0]}-"
        f"{SCALE_LENGTHS[1]} nt, a fresh process per size; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(
        f"  {'rows':>10}{'RSS':>7}{'run() peak+':>13}{'held+':>8}{'resume peak+':>14}"
        f"{'run s':>8}{'resume s':>10}{'load':>6}   (MiB)"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="raysattr-scale-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = save_model(tmp / "model")
        for n in sizes:
            spec = DatasetSpec("dna", n, *SCALE_LENGTHS, seed=SEED + 3)
            data = write(generate(spec), tmp / "data" / f"dna-{n}.parquet", "parquet")
            child = {
                "n_rows": n,
                "model_dir": str(model_dir),
                "data_uri": data,
                "out_uri": str(tmp / f"out-{n}"),
                "result": str(tmp / f"scale-{n}.json"),
            }
            subprocess.run(
                [sys.executable, __file__, "--scale-child", json.dumps(child)], check=True
            )
            r = json.loads(Path(child["result"]).read_text())
            results.append(r)
            mib = [r[k] / 2**20 for k in ("rss", "peak", "held", "resume")]
            print(
                f"  {n:>10,}{mib[0]:7.0f}{mib[1]:13.1f}{mib[2]:8.1f}{mib[3]:14.1f}"
                f"{r['seconds']:8.0f}{r['resume_s']:10.0f}{os.getloadavg()[0]:6.1f}",
                flush=True,
            )
            subprocess.run(["rm", "-rf", child["out_uri"], data], check=True)
    small, large = results[0], results[-1]
    for key, name in (("peak", "run()"), ("resume", "resume run()")):
        grown = (large[key] - small[key]) / 2**20
        print(
            f"  {name} peak growth {small['n_rows']:,} -> {large['n_rows']:,} rows: "
            f"{grown:+.1f} MiB ({'ok' if grown <= 20 else 'over'} the 20 MiB bound)"
        )


# ----------------------------------------------------------------------------------- main
def quiet() -> None:
    """Keep the table readable: no progress bars, Ray Data INFO logs or Captum warnings."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")  # Ray workers inherit it
    hf_logging.disable_progress_bar()
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def overhead_section(w: Workload, s: Sizes, model_dir: Path, tmp: Path, first: bool):
    """Engine alone, stages serially and Ray `run()` on one workload, interleaved."""
    data_uri = write_dataset(tmp / "data", w.n_rows, SEED)

    def make(actors: int = 1) -> RunConfig:
        return make_config(model_dir, data_uri, str(tmp / f"out-{w.method}"), w, actors)

    print(
        f"\n== overhead: {w.method} n_steps {w.n_steps}, {w.n_rows:,} rows of "
        f"{LENGTHS[0]}-{LENGTHS[1]} nt (k={K}); 1 actor x 1 CPU vs the engine on 1 thread"
    )
    serial = warm = None
    cold = float("nan")  # only the first section starts Ray
    for repeat in range(s.repeats):
        serial = run_serially(make(), 1, tmp / "serial").best(serial)
        if first and repeat == 0:
            start = time.perf_counter()
            init_ray(None)
            cold = timed_run(make()).seconds + time.perf_counter() - start
        warm = timed_run(make()).best(warm)
    print_overhead(w.n_rows, serial, warm, cold, timed_finish(make()))
    print(f"  load average {os.getloadavg()[0]:.2f}")
    return warm, make


def actors_section(w: Workload, s: Sizes, one: RunTiming, make) -> None:
    print(f"\n== actors: {w.method} n_steps {w.n_steps}, {w.n_rows:,} rows, cpus_per_actor 1")
    two = None
    for _ in range(s.repeats):
        two = timed_run(make(2)).best(two)
    print_actors(w.n_rows, one, two)
    print(f"  load average {os.getloadavg()[0]:.2f}")


def length_routing(quick: bool, routings: str, rows: int) -> None:
    """The length routing section alone (benchmarks/pipeline_routing.py) on `rows` proteins."""
    from pipeline_routing import routing_section

    quiet()
    with tempfile.TemporaryDirectory(prefix="raysattr-routing-") as tmp_name:
        routing_section(
            Path(tmp_name),
            repeats=1,
            n_rows=1_000 if quick else rows,
            routings=tuple(routings.split(",")),
        )
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no repeats")
    parser.add_argument("--skip-memory", action="store_true", help="no memory section")
    parser.add_argument(
        "--memory-scale",
        nargs="?",
        const="100000,1000000",
        help="only driver memory at scale (default sizes 100000,1000000 rows)",
    )
    parser.add_argument(
        "--length-routing",
        action="store_true",
        help="only length routing (pipeline_routing.py): 5,000 proteins, each routing option",
    )
    parser.add_argument(
        "--routings",
        default="window,sort,groupby,none",
        help="with --length-routing: the compute.length_routing values to run",
    )
    parser.add_argument(
        "--routing-rows",
        type=int,
        default=5_000,
        help="with --length-routing: proteins in the set (the actor's start is a fixed cost)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(json.loads(args.memory_child))
    if args.scale_child:
        return scale_child(json.loads(args.scale_child))
    if args.memory_scale:
        return memory_scale([int(n) for n in args.memory_scale.split(",")])
    if args.length_routing:
        return length_routing(args.quick, args.routings, args.routing_rows)
    quiet()
    s, started = sizes(args.quick), time.perf_counter()
    print(
        f"torch {torch.__version__}, ray {ray.__version__}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; rows_per_call {ROWS_PER_CALL}, rows_per_block {ROWS_PER_BLOCK}"
        f", best of {s.repeats}"
    )
    with tempfile.TemporaryDirectory(prefix="raysattr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = save_model(tmp / "model")
        runs = [overhead_section(w, s, model_dir, tmp, i == 0) for i, w in enumerate(s.workloads)]
        actors_section(s.workloads[0], s, *runs[0])
        ray.shutdown()
        if not args.skip_memory:
            print("\n== driver memory: saliency, 1 actor, a fresh process per size")
            print_memory([measure_memory(model_dir, tmp, n) for n in s.memory_rows])
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
