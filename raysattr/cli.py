"""`raysattr run|plan|aggregate|qc|report|audit|export|demo`: the command line.

Exit codes: 0 ok, 1 run failure, 2 bad config/usage, 3 audit found drift, 130 interrupted.
A failure prints one line, `error: <what>, <where>, <what to do>`; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from raysattr.attribution.registry import check_methods
from raysattr.config import load
from raysattr.errors import RaysattrError, root_cause

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"  # editable install


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raysattr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a failure, not just its line"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's own logs and progress too (default: in Ray's session log files)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="attribute a dataset (Ray in-process unless RAY_ADDRESS)")
    run.add_argument("config", help="YAML config, e.g. configs/demo.yaml")
    run.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. attribution.n_steps=32"
    )
    agg = sub.add_parser(
        "aggregate", help="dataset statistics of an existing output (attributions/ folder)"
    )
    agg.add_argument("output", help="run output directory or s3:// prefix")
    agg.add_argument("--config", help="YAML config whose `stats` section applies")
    agg.add_argument("overrides", nargs="*", help="key=value overrides, e.g. stats.alpha=0.01")
    qc = sub.add_parser("qc", help="faithfulness curves of an existing output -> qc.parquet")
    qc.add_argument("output", help="run output directory or s3:// prefix")
    qc.add_argument("--config", help="the run's YAML config (model, attribution and qc sections)")
    qc.add_argument("overrides", nargs="*", help="key=value overrides, e.g. qc.sample_rows=500")
    rep = sub.add_parser("report", help="rebuild report.html of an output directory")
    rep.add_argument("output", help="run output directory or s3:// prefix")
    rep.add_argument("--config", help="YAML config whose `report` section applies")
    rep.add_argument("overrides", nargs="*", help="key=value overrides, e.g. report.top_n=50")
    audit = sub.add_parser("audit", help="audit a dataset snapshot against the previous audit")
    audit.add_argument("config", help="YAML config, e.g. configs/audit.yaml")
    audit.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. audit.incremental=true"
    )
    exp = sub.add_parser(
        "export", help="write a run's seqlets/scores for other tools: modisco, bed, fasta, bedgraph"
    )
    exp.add_argument("kind", help="modisco | bed | fasta | bedgraph")
    exp.add_argument("output", help="run output directory or s3:// prefix")
    exp.add_argument("dest", help="where to write: a folder (modisco) or a file")
    exp.add_argument("--config", help="YAML config (data.coordinates); default: the run's own")
    exp.add_argument(
        "--windows", default="seqlets", help="modisco: seqlets (one centred on each) | crop"
    )
    exp.add_argument("--width", type=int, default=100, help="modisco: window width in residues")
    exp.add_argument("overrides", nargs="*", help="key=value, e.g. data.coordinates.chrom=chr")
    plan = sub.add_parser(
        "plan", help="count rows and tokens, estimate time and device-hours; runs nothing"
    )
    plan.add_argument("config", help="YAML config, e.g. configs/demo.yaml")
    plan.add_argument("overrides", nargs="*", help="key=value overrides")
    plan.add_argument("--actors", type=int, help="attribution actors (default compute.max_actors)")
    plan.add_argument(
        "--tokens-per-s",
        type=float,
        help="evaluated tokens/s of one actor (default: measured by a short probe here)",
    )
    plan.add_argument("--probe-rows", type=int, default=32, help="rows the probe attributes")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    demo = sub.add_parser("demo", help="build demo data + model, then run the demo job")
    demo.add_argument("--out", default="outputs/demo", help="output directory")
    demo.add_argument("overrides", nargs="*", help="key=value overrides for the demo run")
    # `raysattr run X.yaml --debug` works too
    for command in (run, agg, qc, rep, audit, exp, plan, demo):
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        command.add_argument(
            "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def job_argv(command: str, argv: list[str], description: str) -> list[str]:
    """`--config X.yaml key=value ...` of a `jobs/*.py` entry point -> `raysattr` arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--verbose", action="store_true", help="show Ray's own logs too")
    args = parser.parse_args(argv)
    return [*(["--verbose"] if args.verbose else []), command, args.config, *args.overrides]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `raysattr` console script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parser().parse_args(argv)
    if args.verbose:  # read by raysattr.pipeline.raylog, here and in jobs/*.py
        os.environ["RAYSATTR_VERBOSE"] = "1"
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("error: interrupted; a resume run continues where this one stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line (and an exit code)
        return _report_failure(exc, args.debug)


def _dispatch(args) -> int:
    if args.command == "run":
        return _run(load(args.config, args.overrides))
    if args.command == "audit":
        return _audit(load(args.config, args.overrides))
    if args.command == "demo":
        return _demo(args.out, args.overrides)
    if args.command == "plan":
        return _plan(load(args.config, args.overrides), args)
    cfg = load(args.config, args.overrides)
    if args.command == "export":  # reads the output, writes only DEST: no lease
        from raysattr.export import export

        print(export(args.kind, args.output, args.dest, cfg, args.windows, args.width))
        return 0
    # aggregate, qc and report rewrite files of an existing output: they hold its lease too, so
    # they never interleave with a run (or each other) writing there.
    with _holding(args.output, args.command, cfg.output.lease_ttl_s):
        if args.command == "aggregate":
            return _aggregate(args.output, cfg)
        if args.command == "qc":
            check_methods(cfg.attribution)
            return _qc(args.output, cfg)
        from raysattr.report.build import build_report

        print(build_report(args.output, cfg.report))
        return 0


@contextmanager
def _holding(output: str, command: str, ttl_s: float):
    from raysattr.errors import OutputError
    from raysattr.io.rundir import RunDir, new_run_id

    folder = RunDir(output)
    if not folder.present():
        raise OutputError("no such output folder", f"OUTPUT={output!r}", "give a run's output.uri")
    lease = folder.acquire_lease(f"{command}-{new_run_id()}", ttl_s)
    try:
        yield lease
    finally:
        lease.release()


def _report_failure(exc: BaseException, debug: bool) -> int:
    """Print `error: ...` (the cause behind Ray's wrappers) and return the exit code."""
    cause = root_cause(exc)
    if debug:
        traceback.print_exception(exc)
    if isinstance(cause, RaysattrError):
        print(f"error: {cause}", file=sys.stderr)
        return cause.exit_code
    text = (str(cause).strip() or type(cause).__name__).splitlines()[0][:300]
    if isinstance(cause, (FileNotFoundError, ValueError, PermissionError)):
        print(f"error: {text}", file=sys.stderr)
    else:
        hint = "" if debug else "; rerun with --debug for the traceback"
        print(f"error: unexpected {type(cause).__name__}: {text}{hint}", file=sys.stderr)
    return 1


def _run(cfg) -> int:
    from raysattr.pipeline.plan import run

    result = run(cfg)
    print(result.one_line())
    unconverged = result.summary.get("convergence", {}).get("unconverged", 0)
    if unconverged:
        print(
            f"raysattr: warning: {unconverged} rows missed attribution.delta_tolerance at "
            "attribution.max_evals (converged=false; the worst are listed in report.html)"
        )
    if "report" in result.summary:
        print(f"raysattr: report -> {result.summary['report']}")
    return 0


def _plan(cfg, args) -> int:
    from raysattr.pipeline.costplan import make_plan, render

    plan = make_plan(cfg, args.actors, args.tokens_per_s, args.probe_rows)
    print(json.dumps(plan.as_dict(), indent=1) if args.json else "\n".join(render(plan)))
    return 0


def _aggregate(output: str, cfg) -> int:
    """Statistics of `output`: Ray tasks on a cluster (RAY_ADDRESS / compute.address), else a
    streaming loop in this process."""
    import os

    from raysattr.stats.run import compute_statistics

    map_fn = None
    if cfg.compute.address or os.environ.get("RAY_ADDRESS"):
        from raysattr.pipeline.plan import init_ray
        from raysattr.pipeline.tasks import ray_map

        init_ray(cfg.compute.address)
        map_fn = ray_map
    from raysattr.progress import tracked_map
    from raysattr.stats.passes import local_map

    stats = compute_statistics(
        output, cfg.stats, map_fn=tracked_map(map_fn or local_map, "statistics")
    )
    print(
        f"raysattr: statistics of {stats['rows']} rows -> {output}: "
        f"{stats['n_significant']} significant k-mers, {len(stats['motifs'])} motifs, "
        f"{stats['n_seqlets']} seqlets; top {', '.join(stats['top_motifs'][:3]) or 'none'}"
    )
    return 0


def _audit(cfg) -> int:
    from raysattr.audit.drift import describe
    from raysattr.audit.scheduled import DRIFT_EXIT, run_audit

    audit = run_audit(cfg)
    drift = ", ".join(audit["drift"]) or "none"
    snapshot = audit.get("snapshot") or {}
    print(
        f"raysattr: audit {audit['audit_id']} {audit['status']} ({audit['mode']}: "
        f"{snapshot.get('rows', '?')} rows in the snapshot, {audit['rows_processed']} attributed "
        f"now) vs {audit['previous'] or 'nothing'}; drift: {drift}"
    )
    for check in audit["checks"]:
        if not check["passed"]:
            print(f"  DRIFT {describe(check)}")
    print(f"raysattr: audit -> {audit['output']}/audit.json")
    return DRIFT_EXIT if audit["status"] == "drift" else 0


def _qc(output: str, cfg) -> int:
    from raysattr.progress import Progress
    from raysattr.qc import faithfulness

    with Progress("faithfulness", unit="rows") as progress:
        qc = faithfulness(output, cfg, progress=progress.update).summary
    comp, suff = qc["aopc_comprehensiveness"], qc["aopc_sufficiency"]
    print(
        f"raysattr: faithfulness of {qc['n_rows']} rows -> {output}/qc.parquet: AOPC "
        f"comprehensiveness {comp['attribution']:.3f} (random {comp['random']:.3f}), "
        f"sufficiency {suff['attribution']:.3f} (random {suff['random']:.3f})"
    )
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
