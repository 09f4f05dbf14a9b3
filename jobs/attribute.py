"""Entry point for `ray job submit`; the same code path as `raysattr run`.

    ray job submit --working-dir . -- python jobs/attribute.py --config configs/X.yaml key=value

Inside a submitted job `RAY_ADDRESS` is set, so the run joins the cluster instead of starting
Ray in-process. Exit codes: 0 ok, 1 run failure, 2 bad config.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # working_dir without an install

from raysattr.cli import job_argv, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(job_argv("run", sys.argv[1:], __doc__)))
