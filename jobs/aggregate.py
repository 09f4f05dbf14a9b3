"""Entry point for `ray job submit` of the statistics alone; the same code path as
`raysattr aggregate`.

    ray job submit --working-dir . -- python jobs/aggregate.py s3://bucket/run [--config X.yaml] \\
        stats.alpha=0.01

Inside a submitted job `RAY_ADDRESS` is set, so the partials run as Ray tasks on the cluster.
Exit codes: 0 ok, 1 failure (e.g. no attributions), 2 bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # working_dir without an install

from raysattr.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["aggregate", *sys.argv[1:]]))
