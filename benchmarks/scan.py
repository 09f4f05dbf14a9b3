"""Benchmark: driver memory and time of the pre-flight id scan (`io.scan.scan_inputs`).

`.venv/bin/python benchmarks/scan.py [--sizes 100000,1000000]`: a parquet file of n 13-character
ids per size, then a fresh process per size that scans it once to warm up (imports, Arrow
pools) and once measured: peak RSS growth (`VmHWM` after resetting it) and seconds. The scan
spills id hashes to hash partitions on disk, so the peak should not grow with the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def status_bytes(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def child(path: str) -> None:
    from raysattr.config import DataConfig
    from raysattr.io.scan import scan_inputs
    from raysattr.io.sources import list_inputs

    files, cfg = list_inputs(path), DataConfig(uri=path)
    scan_inputs(files, cfg)  # warm-up
    Path("/proc/self/clear_refs").write_text("5")
    rss = status_bytes("VmRSS")
    start = time.perf_counter()
    scan = scan_inputs(files, cfg)
    seconds = time.perf_counter() - start
    peak = status_bytes("VmHWM") - rss
    print(json.dumps({"rows": scan.total_rows, "seconds": seconds, "peak": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    results = []
    with tempfile.TemporaryDirectory(prefix="raysattr-scan-bench-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            path = Path(tmp) / f"ids-{n}.parquet"
            table = pa.table(
                {
                    "id": pa.array([f"row-{i:09d}" for i in range(n)]),
                    "sequence": pa.array(["ACGTACGTAC"] * n),
                    "label": pa.array(np.zeros(n, np.int64)),
                }
            )
            pq.write_table(table, path)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results.append(r)
            print(
                f"{r['rows']:>10,} rows: scan {r['seconds']:.1f} s, peak +{r['peak'] / 2**20:.1f}"
                f" MiB; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    grown = (results[-1]["peak"] - results[0]["peak"]) / 2**20
    print(f"peak growth {results[0]['rows']:,} -> {results[-1]['rows']:,} rows: {grown:+.1f} MiB")


if __name__ == "__main__":
    main()
