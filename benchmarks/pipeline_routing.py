"""Length routing (issue 15), the `--length-routing` section of benchmarks/pipeline.py.

Data and model, built in a temp dir: `N_ROWS` random protein rows whose lengths are log-normal
(median `MEDIAN`, sigma `SIGMA`) clipped to 30-3,000 residues, in one parquet file; a
random-weight tiny residue model (ProtBert vocabulary, hidden 64, 2 layers, 4 heads, positions
for 3,000 residues). Saliency (one forward+backward per row: the pipeline's own costs show most).

- *engine alone, pre-sorted*: the rows tokenized and sorted by length over the whole set, then
  `AttributionEngine.run` on consecutive slices of `rows_per_call` rows, in the driver on one
  torch thread (an actor with `cpus_per_actor=1` gets `OMP_NUM_THREADS=1`). The reference.
- `run()` with one actor per `compute.length_routing`: `window` (the default: each window of
  `length_window_rows` rows sorted in a streaming task), `sort` (Ray Data's global sort),
  `groupby` (`groupby(bucket).map_groups`), `none` (blocks as read). For each: wall seconds,
  rows/s against the engine's, `padding_fraction` from summary.json (padding / token positions in
  the micro-batches), seconds to the first result batch, the object store's peak use (sampled
  every 0.2 s from `ray.available_resources`), and the driver's peak RSS growth.

One warm-up `run()` on a slice first (`init_ray`, worker processes); then the runs interleaved,
best of `repeats`. The load average is printed with every figure.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from raysattr.config import RunConfig, load
from raysattr.io.sources import list_inputs, read_file
from raysattr.pipeline import plan
from raysattr.pipeline.plan import init_ray, run
from raysattr.pipeline.stages import AttributeStage, TokenizeStage, rows_from_table, sort_window
from raysattr.pipeline.summary import RunSummary
from raysattr.tokenize import build_protein_vocab

N_ROWS = 5_000
MEDIAN, SIGMA, LO, HI = 150, 1.0, 30, 3_000
ROWS_PER_CALL, ROWS_PER_BLOCK = 256, 512
ROUTINGS = ("window", "sort", "groupby", "none")
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def save_random_bert(out_dir: Path, vocab: list[str], max_positions: int, seed: int = 0) -> Path:
    """A random-weight tiny `BertForSequenceClassification` (hidden 64, 2 layers, 4 heads) and a
    `BertTokenizer` over `vocab`; `initializer_range` 0.3 gives outputs that vary with the input,
    as in tests/factories.py."""
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False).save_pretrained(
        out_dir
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_positions,
        num_labels=2,
        initializer_range=0.3,
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir


def save_residue_model(out_dir: Path, seed: int = 0) -> Path:
    """The tiny random BERT with the ProtBert vocabulary."""
    return save_random_bert(out_dir, build_protein_vocab(), HI + 2, seed)


def write_proteins(path: Path, n_rows: int, seed: int = 0) -> tuple[str, np.ndarray]:
    """`n_rows` random proteins of log-normal lengths in [LO, HI]; (parquet path, lengths)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(MEDIAN), SIGMA, n_rows), LO, HI).astype(int)
    letters = np.frombuffer(AMINO.encode(), np.uint8)
    seqs = [letters[rng.integers(0, 20, n)].tobytes().decode() for n in lengths]
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n_rows)],
            "sequence": seqs,
            "label": rng.integers(0, 2, n_rows),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path), lengths


def routing_config(model_dir: Path, data_uri: str, out_uri: str, routing: str) -> RunConfig:
    overrides = {
        "data.uri": data_uri,
        "data.label_column": "label",
        "tokenize.scheme": "residue",
        "model.path": model_dir,
        "attribution.method": "saliency",
        "compute.min_actors": 1,
        "compute.max_actors": 1,
        "compute.cpus_per_actor": 1,
        "compute.rows_per_call": ROWS_PER_CALL,
        "compute.rows_per_block": ROWS_PER_BLOCK,
        "compute.length_routing": routing,
        "output.uri": out_uri,
        "output.mode": "overwrite",
        "stats.enabled": "false",
        "qc.enabled": "false",
        "report.enabled": "false",
    }
    return load(None, [f"{k}={v}" for k, v in overrides.items()])


def engine_presorted(cfg: RunConfig) -> dict:
    """The engine alone on every row, sorted by length over the whole set, 1 torch thread."""
    tokenize = TokenizeStage(cfg)
    table = pa.concat_tables(
        [tokenize(t) for f in list_inputs(cfg.data.uri) for t in read_file(f.uri, cfg.data)]
    )
    table = sort_window(table)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = AttributeStage(cfg, "bench").engine
        engine.run(rows_from_table(table.slice(0, 32)))  # warm-up, untimed
        engine.tokens_evaluated = engine.tokens_padding = 0
        start = time.perf_counter()
        for offset in range(0, table.num_rows, cfg.compute.rows_per_call):
            engine.run(rows_from_table(table.slice(offset, cfg.compute.rows_per_call)))
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return {
        "seconds": seconds,
        "padding_fraction": engine.tokens_padding / max(engine.tokens_evaluated, 1),
    }


class StoreSampler:
    """Peak object-store use of the cluster while it runs, sampled every `period_s`."""

    def __init__(self, period_s: float = 0.2):
        self.period_s, self.peak, self._stop = period_s, 0.0, threading.Event()
        self.total = ray.cluster_resources().get("object_store_memory", 0.0)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            free = ray.available_resources().get("object_store_memory", self.total)
            self.peak = max(self.peak, self.total - free)
            self._stop.wait(self.period_s)

    def __enter__(self) -> StoreSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed_routing_run(cfg: RunConfig) -> dict:
    """One `run(cfg)`: seconds, first result, padding, object store and driver peaks."""
    from pipeline import reset_peak, status_bytes  # noqa: PLC0415  (pipeline.py imports this)

    arrivals: list[float] = []

    class TimedSummary(RunSummary):
        def add(self, batch) -> None:
            arrivals.append(time.perf_counter())
            super().add(batch)

    plan.RunSummary = TimedSummary
    try:
        rss = reset_peak()
        with StoreSampler() as store:
            start = time.perf_counter()
            result = run(cfg)
            seconds = time.perf_counter() - start
    finally:
        plan.RunSummary = RunSummary
    s = result.summary
    if s["rows"]["error"] or s["rows"]["out"] != pq.read_metadata(cfg.data.uri).num_rows:
        raise RuntimeError(f"run() on {cfg.data.uri}: {result.one_line()}")
    return {
        "seconds": seconds,
        "first": arrivals[0] - start,
        "padding_fraction": s["padding_fraction"],
        "buckets": s["length_buckets"],
        "store_mib": store.peak / 2**20,
        "driver_mib": (status_bytes("VmHWM") - rss) / 2**20,
    }


def routing_section(
    tmp: Path, repeats: int, n_rows: int = N_ROWS, routings: tuple[str, ...] = ROUTINGS
) -> None:
    """Print the engine reference and one line per routing, then the per-bucket figures of the
    default routing."""
    data_uri, lengths = write_proteins(tmp / "proteins" / "proteins.parquet", n_rows)
    model_dir = save_residue_model(tmp / "residue-model")
    print(
        f"\n== length routing: saliency, {n_rows:,} proteins of {LO}-{HI} aa (log-normal, "
        f"median {np.median(lengths):.0f}, mean {lengths.mean():.0f}); 1 actor x 1 CPU vs the "
        f"engine on 1 thread; load average {os.getloadavg()[0]:.2f}"
    )

    def make(routing: str, data: str = data_uri) -> RunConfig:
        return routing_config(model_dir, data, str(tmp / f"out-{routing}"), routing)

    init_ray(None)
    warm = copy.deepcopy(make("none"))
    warm.data.limit = 300
    run(warm)  # worker processes, imports
    engine, best = None, {}
    for _ in range(repeats):
        e = engine_presorted(make("window"))
        engine = e if engine is None or e["seconds"] < engine["seconds"] else engine
        print(f"  (engine: {e['seconds']:.1f} s, load {os.getloadavg()[0]:.2f})", flush=True)
        for routing in routings:
            r = timed_routing_run(make(routing))
            if routing not in best or r["seconds"] < best[routing]["seconds"]:
                best[routing] = r
            print(
                f"  ({routing}: {r['seconds']:.1f} s, x engine {e['seconds'] / r['seconds']:.2f}, "
                f"padding {r['padding_fraction']:.3f}, load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    _print_routing(n_rows, engine, best)


def _print_routing(n_rows: int, engine: dict, best: dict) -> None:
    head = f"  {'':<34}{'seconds':>8}{'rows/s':>8}{'x engine':>9}{'padding':>9}"
    print(head + f"{'first s':>8}{'after 1st':>10}{'store MiB':>10}{'driver MiB':>11}")
    e = engine["seconds"]
    print(
        f"  {'engine alone, pre-sorted':<34}{e:8.1f}{n_rows / e:8.0f}{1.0:9.2f}"
        f"{engine['padding_fraction']:9.3f}"
    )
    for routing, r in best.items():
        print(
            f"  {'run(), length_routing=' + routing:<34}{r['seconds']:8.1f}"
            f"{n_rows / r['seconds']:8.0f}{e / r['seconds']:9.2f}{r['padding_fraction']:9.3f}"
            f"{r['first']:8.1f}{e / (r['seconds'] - r['first']):10.2f}{r['store_mib']:10.0f}"
            f"{r['driver_mib']:11.1f}"
        )
    print(
        "  (first s: seconds to the first result batch, mostly the actor's start: a new process"
        " importing torch, transformers and raysattr, then the model load; after 1st: x engine"
        " over the seconds after it)"
    )
    print("  per bucket (window): bucket rows engine_s rows/s padding")
    for b in best.get("window", {}).get("buckets", []):
        rate = b["rows_per_s"] or 0.0
        print(
            f"    {b['bucket']:>6}{b['rows']:>7}{b['engine_s']:9.1f}{rate:9.0f}"
            f"{b['padding_fraction'] or 0.0:9.3f}"
        )
    print(f"  load average {os.getloadavg()[0]:.2f}")
