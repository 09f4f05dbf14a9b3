"""Entry point for scheduled audits under `ray job submit`; the same code path as
`raysattr audit`.

    ray job submit --submission-id audit-$(date +%F) --working-dir . -- \\
        python jobs/audit.py --config configs/audit.yaml audit.incremental=true

Exit codes: 0 within thresholds (or first audit), 3 drift (named in the output and audit.json),
1 failure, 2 bad config. `ray job submit` reports a non-zero exit as a FAILED job, which is what
a scheduler should alert on; audit.json tells drift from failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # working_dir without an install

from raysattr.cli import job_argv, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(job_argv("audit", sys.argv[1:], __doc__)))
