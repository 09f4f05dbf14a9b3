"""Benchmark: where the driver's memory goes during `run()`, sampled over time.

`.venv/bin/python benchmarks/driver_memory.py [--sizes 20000,100000] [--arrow-pool mimalloc]`:
the workload of `pipeline.py --memory-scale` (saliency, tiny random BERT, rows of 24-40 nt, 1
actor), one fresh process per size. A thread samples /proc/self/status every `--every` seconds
while `run()` lasts: RssAnon (native heap, thread stacks, allocator pages), RssShmem (object-store
pages mapped into the driver), Arrow's live and peak bytes, object refs the driver holds. It
prints the peak growth over the RSS after `init_ray` (as `--memory-scale` does), the samples'
first and last values, and what `malloc_trim(0)` gives back after the run (freed but kept by
glibc). `--arrow-pool mimalloc` pins pyarrow's default pool (what `run()` replaced with malloc).

A slope that keeps rising while no result arrives (the actor still loading) is time-based
(allocator retention), one that follows the rows received is per row: compare sizes. Figures
and what they showed: NOTES.md, "Flat driver memory (issue 15, fifth session)".
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import ray
from pipeline import (
    SCALE_LENGTHS,
    SEED,
    Workload,
    make_config,
    quiet,
    reset_peak,
    save_model,
    status_bytes,
)

from raysattr.demo import DatasetSpec, generate, write
from raysattr.pipeline.plan import init_ray, run

FIELDS = ("VmRSS", "RssAnon", "RssShmem")


def status_mib(field: str) -> float:
    return status_bytes(field) / 2**20


def sample() -> dict[str, float]:
    """MiB of `FIELDS` and Arrow's default pool (live, peak), and the object refs held."""
    out = {f: status_mib(f) for f in FIELDS}
    out["arrow"] = pa.total_allocated_bytes() / 2**20
    out["arrow_peak"] = pa.default_memory_pool().max_memory() / 2**20
    out["refs"] = len(ray._private.worker.global_worker.core_worker.get_all_reference_counts())
    return out


def child(spec: dict) -> None:
    """In a fresh process: `run()` over `spec["data"]` with a sampling thread; figures to
    `spec["result"]`."""
    quiet()
    n = spec["n_rows"]
    cfg = make_config(spec["model"], spec["data"], spec["out"], Workload("saliency", 1, n))
    init_ray(None)
    if spec["arrow_pool"]:  # after init_ray: Ray's workers inherit neither
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = spec["arrow_pool"]  # run() keeps it
        pa.set_memory_pool(getattr(pa, f"{spec['arrow_pool']}_memory_pool")())
    base, samples, stop = reset_peak() / 2**20, [], threading.Event()
    start = time.perf_counter()

    def loop() -> None:
        while not stop.wait(spec["every"]):
            samples.append({"t": time.perf_counter() - start, **sample()})

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    result = run(cfg)
    stop.set()
    thread.join()
    if result.summary["rows"]["out"] != n:
        raise RuntimeError(result.one_line())
    peak = status_mib("VmHWM") - base
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = sample()
    ray.shutdown()
    out = {"n": n, "s": time.perf_counter() - start, "base": base, "peak": peak}
    out.update(samples=samples, trimmed=trimmed)
    Path(spec["result"]).write_text(json.dumps(out))


def show(r: dict) -> None:
    first, last = r["samples"][0], r["samples"][-1]
    print(
        f"  {r['n']:>9,} rows {r['s']:6.0f} s  peak +{r['peak']:.1f} MiB  load "
        f"{os.getloadavg()[0]:.1f}"
    )
    for name, s in (("first", first), ("last", last), ("trimmed", r["trimmed"])):
        values = "  ".join(f"{k} {s[k]:.1f}" for k in (*FIELDS, "arrow", "arrow_peak"))
        at = f"t={s['t']:.0f}s" if "t" in s else "after run, malloc_trim(0)"
        print(f"    {name:>8} ({at}): {values}  refs {s['refs']}  (MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--arrow-pool", choices=["mimalloc", "jemalloc", "system"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    print(f"== driver memory over a run; Arrow pool {args.arrow_pool or 'run() default'}")
    with tempfile.TemporaryDirectory(prefix="raysattr-drivermem-") as tmp_name:
        tmp = Path(tmp_name)
        model = save_model(tmp / "model")
        for n in (int(v) for v in args.sizes.split(",")):
            spec = DatasetSpec("dna", n, *SCALE_LENGTHS, seed=SEED + 3)
            child_spec = {
                "n_rows": n,
                "model": str(model),
                "data": write(generate(spec), tmp / f"dna-{n}.parquet", "parquet"),
                "out": str(tmp / f"out-{n}"),
                "result": str(tmp / f"result-{n}.json"),
                "every": args.every,
                "arrow_pool": args.arrow_pool,
            }
            cmd = [sys.executable, __file__, "--child", json.dumps(child_spec)]
            subprocess.run(cmd, check=True)
            show(json.loads(Path(child_spec["result"]).read_text()))


if __name__ == "__main__":
    main()
