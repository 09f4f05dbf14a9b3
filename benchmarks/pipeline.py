"""Benchmark: the Ray Data pipeline against the engine alone, 1 vs 2 actors, driver memory.

Run `.venv/bin/python benchmarks/pipeline.py` (about 12 minutes on 2 quiet cores) or `... --quick`
(about 4). One process, except the memory section: each size runs in a fresh subprocess.

Data and model, built in a temp dir: seeded DNA rows of 40-80 nt from `raysattr.demo.generate` in
one parquet file, and a random-weight BERT of the demo model's shape (hidden 64, 2 layers, 4
heads, intermediate 128) with the DNABERT k=6 vocabulary, saved with `save_pretrained`.

- **overhead**, per method (`lig` with 8 steps: compute dominates; `saliency`: the pipeline's own
  costs dominate): (a) *engine alone*: only `AttributionEngine.run`, in the driver, in calls of
  `rows_per_call` rows, torch on 1 thread (what an actor with `cpus_per_actor=1` gets: Ray sets
  `OMP_NUM_THREADS=1`); (b) *stages serially*: the pipeline's stage classes (read,
  `TokenizeStage`, `AttributeStage`, `WriteStage`) in a loop in the driver, no Ray;
  (c) `raysattr.pipeline.plan.run(cfg)`, 1 actor: *cold* = `init_ray` + the first `run()`,
  *warm* = a later `run()` in the same Ray session. Every `run()` still starts its actor pools
  (new processes that import torch) and loads the model: that fixed cost is the warm `run()` of
  one call's rows (`small`), and *marginal* seq/s = (N - n_small) / (t_N - t_small) is the
  steady-state rate. `x engine` = seq/s over the engine's seq/s (target >= 0.91, i.e. overhead
  <= 10 %). (a), (b) and warm (c) are best of `repeats`, interleaved.
- **actors**: warm `run()` with `min_actors = max_actors = 2`, `cpus_per_actor = 1` against 1
  actor, total and marginal; the engine alone on 2 torch threads for reference. Both actors,
  the tokenize and write actors and the driver share 2 cores: the ceiling is 2x.
- **memory**: `saliency` over the small and the large data set, each in a fresh process: Ray
  started, the RSS high-water mark reset (`/proc/self/clear_refs`), `run()`, then `VmHWM`. Printed:
  RSS before, peak growth during `run()`, growth still held after it, the size (tracemalloc) of a
  set of `"{id}\\x00{target}"` keys like the one `RunSummary` keeps for the duplicate check, and
  the peak growth of a `resume` run over the finished output (every id read back into
  `done_ids`, every row skipped).

On 2 cores other processes distort timings badly: the load average is printed per section.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow.parquet as pq
import ray
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer
from transformers.utils import logging as hf_logging

from raysattr.config import RunConfig, load
from raysattr.demo import DatasetSpec, generate, write
from raysattr.io.sources import list_inputs, read_file
from raysattr.pipeline.aggregate import ray_map
from raysattr.pipeline.plan import init_ray, run
from raysattr.pipeline.stages import AttributeStage, TokenizeStage, WriteStage, rows_from_table
from raysattr.stats.run import aggregate
from raysattr.tokenize import build_kmer_vocab

K = 6
SEED = 0
LENGTHS = (40, 80)  # nucleotides (35-75 k-mers): short, so that 100k rows fit in minutes
ROWS_PER_CALL, ROWS_PER_BLOCK = 256, 512


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
        return Sizes((Workload("lig", 8, 600), Workload("saliency", 1, 3_000)), (2_000, 20_000), 1)
    return Sizes((Workload("lig", 8, 4_000), Workload("saliency", 1, 20_000)), (10_000, 100_000), 2)


# ----------------------------------------------------------------------------- data and model
def save_model(out_dir: Path) -> Path:
    """A random-weight tiny `BertForSequenceClassification` + DNABERT k-mer tokenizer."""
    vocab = build_kmer_vocab(K)
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        num_labels=2,
        initializer_range=0.3,  # outputs that vary with the input, as in tests/factories.py
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir


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
        "stats.enabled": "false",  # timed on its own: `timed_statistics`
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
def timed_run(cfg: RunConfig) -> float:
    """Seconds of one `run(cfg)`; fails when a row is missing, an error or a duplicate."""
    start = time.perf_counter()
    result = run(cfg)
    seconds = time.perf_counter() - start
    rows = result.summary["rows"]
    if (
        rows["error"]
        or rows["n_duplicate_ids"]
        or rows["out"] != pq.read_metadata(cfg.data.uri).num_rows
    ):
        raise RuntimeError(f"run() on {cfg.data.uri}: {result.one_line()}")
    return seconds


@dataclass
class RayTimes:
    n_rows: int
    warm: float = float("inf")
    small: float = float("inf")  # warm run() of ROWS_PER_CALL rows: mostly the fixed cost
    cold: float | None = None  # the first run() in the process
    init: float | None = None  # init_ray()
    stats: float | None = None  # the statistics run() computes at the end when enabled

    @property
    def marginal_rate(self) -> float:
        return (self.n_rows - ROWS_PER_CALL) / (self.warm - self.small)

    def measure(self, make: Callable[[bool], RunConfig]) -> None:
        """One more warm run() of the small and the full data set; keeps the best."""
        self.small = min(self.small, timed_run(make(True)))
        self.warm = min(self.warm, timed_run(make(False)))


def timed_statistics(cfg: RunConfig) -> float:
    """Seconds of the statistics `run()` adds when `stats.enabled` (as Ray tasks, as it does)."""
    start = time.perf_counter()
    aggregate(cfg.output.uri, cfg.stats, map_fn=ray_map)
    return time.perf_counter() - start


def cold_start(times: RayTimes, make: Callable[[bool], RunConfig]) -> None:
    """`init_ray` and the first `run()` of the process."""
    start = time.perf_counter()
    init_ray(None)
    times.init = time.perf_counter() - start
    times.cold = timed_run(make(False))


# ------------------------------------------------------------------------------- printing
def line(name: str, seconds: float | None, rate: float, ratio: float, extra: str = "") -> str:
    shown = f"{seconds:8.1f}" if seconds is not None else " " * 8
    return f"  {name:<46}{shown}{rate:9.0f}{ratio:10.2f}{extra}"


def print_overhead(n: int, serial: SerialTimes, t: RayTimes) -> None:
    e, total = serial.engine, serial.total
    print(f"  {'':<46}{'seconds':>8}{'seq/s':>9}{'x engine':>10}")
    print(line("(a) engine alone (driver, 1 thread)", e, n / e, 1.0))
    parts = f"   read+tokenize {serial.read_tokenize:.1f}, tables {serial.tables:.1f}"
    parts += f", write {serial.write:.1f}"
    print(line("(b) stages serially, no Ray", total, n / total, e / total, parts))
    if t.cold is not None:
        cold = t.init + t.cold
        print(line(f"(c) cold: init_ray {t.init:.1f} s + first run()", cold, n / cold, e / cold))
    print(line("(c) warm run()", t.warm, n / t.warm, e / t.warm))
    with_stats = t.warm + t.stats
    name = f"    + statistics ({t.stats:.1f} s) as run() adds them"
    print(line(name, with_stats, n / with_stats, e / with_stats))
    small = ROWS_PER_CALL
    print(
        line(
            f"    fixed: warm run() of {small} rows",
            t.small,
            small / t.small,
            e * small / n / t.small,
        )
    )
    marginal = t.marginal_rate
    print(line("    marginal (N - small) / (t_N - t_small)", None, marginal, marginal * e / n))


def print_actors(n: int, one: RayTimes, two: RayTimes, engine_1: float, engine_2: float) -> None:
    print(f"  {'':<46}{'seconds':>8}{'seq/s':>9}{'speedup':>10}")
    print(line("warm run(), 1 actor", one.warm, n / one.warm, 1.0))
    print(line("warm run(), 2 actors", two.warm, n / two.warm, one.warm / two.warm))
    speedup = two.marginal_rate / one.marginal_rate
    print(line("marginal, 2 actors (speedup over 1)", None, two.marginal_rate, speedup))
    print(line("engine alone, 2 torch threads", engine_2, n / engine_2, engine_1 / engine_2))
    print(f"  fixed ({ROWS_PER_CALL} rows), 1 -> 2 actors: {one.small:.1f} -> {two.small:.1f} s")


def print_memory(results: list[dict]) -> None:
    """The memory children's figures in MiB, and what grows per row."""
    keys = ("peak_growth", "after_growth", "stats_peak_growth", "resume_peak_growth", "id_set")
    print(
        f"  {'rows':>8}{'RSS before':>11}{'run() peak+':>12}{'held+':>7}{'stats peak+':>12}"
        f"{'resume peak+':>13}{'id set':>7}{'seq/s':>7}{'stats s':>8}   (MiB)"
    )
    for r in results:
        mib = [r[k] / 2**20 for k in keys]
        print(
            f"  {r['n_rows']:>8,}{r['rss_before'] / 2**20:11.0f}{mib[0]:12.1f}{mib[1]:7.1f}"
            f"{mib[2]:12.1f}{mib[3]:13.1f}{mib[4]:7.1f}{r['n_rows'] / r['seconds']:7.0f}"
            f"{r['stats_seconds']:8.1f}"
        )
    small, large = results
    extra = large["n_rows"] - small["n_rows"]
    grown = ", ".join(f"{k} {(large[k] - small[k]) / extra:.0f}" for k in keys)
    ratio = large["peak_growth"] / max(small["peak_growth"], 1)
    print(f"  {large['n_rows'] / small['n_rows']:.0f}x the rows: run() peak growth x{ratio:.2f}")
    print(f"  bytes per extra row: {grown}")


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
    """In a fresh process: driver memory of run(), of the statistics run() adds, and of a
    resume run() over the finished output; writes the figures (bytes) to `spec["result"]`."""
    quiet()
    n = spec["n_rows"]
    cfg = make_config(
        spec["model_dir"], spec["data_uri"], spec["out_uri"], Workload("saliency", 1, n)
    )
    init_ray(None)
    before = reset_peak()
    out = {"n_rows": n, "seconds": timed_run(cfg), "rss_before": before}
    out["peak_growth"] = status_bytes("VmHWM") - before
    out["after_growth"] = status_bytes("VmRSS") - before
    reset_peak()
    out["stats_seconds"] = timed_statistics(cfg)
    out["stats_peak_growth"] = status_bytes("VmHWM") - before  # on top of what run() kept
    cfg.output.mode = "resume"
    resume_before = reset_peak()
    result = run(cfg)
    if result.summary["rows"]["skipped_done"] != n or result.summary["rows"]["out"]:
        raise RuntimeError(f"resume did not skip every row: {result.one_line()}")
    out["resume_peak_growth"] = status_bytes("VmHWM") - resume_before
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


# ----------------------------------------------------------------------------------- main
def quiet() -> None:
    """Keep the table readable: no progress bars, Ray Data INFO logs or Captum warnings."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")  # Ray workers inherit it
    hf_logging.disable_progress_bar()
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def overhead_section(w: Workload, s: Sizes, model_dir: Path, tmp: Path, cold: bool):
    """Engine alone, stages serially and Ray `run()` on one workload, interleaved."""
    data_uri = write_dataset(tmp / "data", w.n_rows, SEED)
    small_uri = write_dataset(tmp / "data", ROWS_PER_CALL, SEED + 1)
    out = str(tmp / f"out-{w.method}")

    def make(small: bool, actors: int = 1) -> RunConfig:
        return make_config(model_dir, small_uri if small else data_uri, out, w, actors)

    print(
        f"\n== overhead: {w.method} n_steps {w.n_steps}, {w.n_rows:,} rows of "
        f"{LENGTHS[0]}-{LENGTHS[1]} nt (k={K}); 1 actor x 1 CPU vs the engine on 1 thread"
    )
    serial, times = None, RayTimes(w.n_rows)
    for repeat in range(s.repeats):
        serial = run_serially(make(False), 1, tmp / "serial").best(serial)
        if cold and repeat == 0:
            cold_start(times, make)
        times.measure(make)
    times.stats = timed_statistics(make(False))
    print_overhead(w.n_rows, serial, times)
    print(f"  load average {os.getloadavg()[0]:.2f}")
    return serial, times, make


def actors_section(w: Workload, s: Sizes, serial: SerialTimes, one: RayTimes, make, tmp: Path):
    print(f"\n== actors: {w.method} n_steps {w.n_steps}, {w.n_rows:,} rows, cpus_per_actor 1")
    two, engine_2 = RayTimes(w.n_rows), float("inf")
    for _ in range(s.repeats):
        two.measure(lambda small: make(small, 2))
        engine_2 = min(engine_2, run_serially(make(False), 2, tmp / "serial-2").engine)
    print_actors(w.n_rows, one, two, serial.engine, engine_2)
    print(f"  load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no repeats")
    parser.add_argument("--skip-memory", action="store_true", help="no memory section")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(json.loads(args.memory_child))
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
        first = [overhead_section(w, s, model_dir, tmp, i == 0) for i, w in enumerate(s.workloads)][
            0
        ]
        actors_section(s.workloads[0], s, *first, tmp)
        ray.shutdown()
        if not args.skip_memory:
            print("\n== driver memory: saliency, 1 actor, a fresh process per size")
            print_memory([measure_memory(model_dir, tmp, n) for n in s.memory_rows])
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
