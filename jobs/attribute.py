"""Entry point for `ray job submit`; the same code path as `raysattr run`.

    ray job submit --working-dir . -- python jobs/attribute.py --config configs/X.yaml key=value

Inside a submitted job `RAY_ADDRESS` is set, so the run joins the cluster instead of starting
Ray in-process. Exit codes: 0 ok, 1 run failure, 2 bad config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # working_dir without an install

from raysattr.cli import main  # noqa: E402


def parse(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    return ["run", args.config, *args.overrides]


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
