"""Entry point for scheduled audits under `ray job submit`; the same code path as
`raysattr audit`.

    ray job submit --submission-id audit-$(date +%F) --working-dir . -- \\
        python jobs/audit.py --config configs/audit.yaml audit.incremental=true

Exit codes: 0 within thresholds (or first audit), 3 drift (named in the output and audit.json),
1 failure, 2 bad config. `ray job submit` reports a non-zero exit as a FAILED job, which is what
a scheduler should alert on; audit.json tells drift from failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # working_dir without an install

from raysattr.cli import main  # noqa: E402


def parse(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/audit.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    return ["audit", args.config, *args.overrides]


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
