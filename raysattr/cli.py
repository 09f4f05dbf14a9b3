"""`raysattr run|demo`: the command line. Exit codes: 0 ok, 1 run failure, 2 bad config/usage."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from raysattr.config import ConfigError, load

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"  # editable install


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysattr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="attribute a dataset (Ray in-process unless RAY_ADDRESS)")
    run.add_argument("config", help="YAML config, e.g. configs/demo.yaml")
    run.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. attribution.n_steps=32"
    )
    demo = sub.add_parser("demo", help="build demo data + model, then run the demo job")
    demo.add_argument("--out", default="outputs/demo", help="output directory")
    demo.add_argument("overrides", nargs="*", help="key=value overrides for the demo run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `raysattr` console script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            cfg = load(args.config, args.overrides)
            return _run(cfg)
        return _demo(args.out, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(cfg) -> int:
    from raysattr.pipeline.plan import run

    result = run(cfg)
    print(result.one_line())
    return 0


def _demo(out: str, overrides: list[str]) -> int:
    from raysattr.demo import build_demo

    built = build_demo(out)
    overrides = [
        f"data.uri={built['data']['parquet']}",
        f"model.path={built['model_dir']}",
        f"output.uri={out}",
        *overrides,
    ]
    return _run(load(DEMO_CONFIG, overrides))


if __name__ == "__main__":
    sys.exit(main())
