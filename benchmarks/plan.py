"""Benchmark: `raysattr plan`'s wall-time estimate against the run it plans, on this machine.

`.venv/bin/python benchmarks/plan.py [--rows 2000] [--method lig] [--actors 1]`: 2-6 minutes.

Data and model as in `benchmarks/pipeline.py` (seeded demo-style DNA rows of 80-160 nt, the
demo's length, in one parquet file; a random-weight BERT of the demo model's shape, k=6).
The config is `configs/demo.yaml`'s attribution and compute settings with `min_actors =
max_actors = --actors`, statistics, faithfulness and report off (the plan estimates the
attribution, what `summary.json` `wall_s` measures). Ray is started before the run and timed
apart: the plan does not count starting Ray. Prints the plan, the run, actual / estimate and the
load average at each step; the issue asks for the estimate within 30 % of the run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pipeline import quiet, save_model

from raysattr.config import load
from raysattr.demo import DatasetSpec, generate, write
from raysattr.pipeline.costplan import make_plan, render
from raysattr.pipeline.plan import init_ray, run

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--method", default="lig")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--probe-rows", type=int, default=32)
    args = parser.parse_args()
    quiet()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="raysattr-plan-") as tmp_name:
        tmp = Path(tmp_name)
        model = save_model(tmp / "model")
        spec = DatasetSpec("dna", args.rows, 80, 160, seed=7)
        data = write(generate(spec), tmp / "dna.parquet", "parquet")
        overrides = [
            f"data.uri={data}",
            f"model.path={model}",
            f"output.uri={tmp / 'out'}",
            f"attribution.method={args.method}",
            f"compute.min_actors={args.actors}",
            f"compute.max_actors={args.actors}",
            "stats.enabled=false",
            "qc.enabled=false",
            "report.enabled=false",
        ]
        cfg = load(DEMO, overrides)
        started = time.perf_counter()
        plan = make_plan(cfg, args.actors, probe_rows=args.probe_rows)
        plan_s = time.perf_counter() - started
        print("\n".join(render(plan)))
        print(f"plan took {plan_s:.1f} s; load average {os.getloadavg()[0]:.2f}")
        started = time.perf_counter()
        init_ray(None)
        print(f"Ray started in {time.perf_counter() - started:.1f} s (not in the estimate)")
        result = run(cfg)
        actual = result.summary["wall_s"]
        print(result.one_line())
        ratio = actual / plan.wall_s
        verdict = "within" if abs(ratio - 1) <= 0.3 else "outside"
        print(
            f"estimate {plan.wall_s:.1f} s, actual {actual:.1f} s: actual / estimate {ratio:.2f} "
            f"({verdict} 30 %); load average {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
