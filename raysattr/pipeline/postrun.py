"""The post-run chain: statistics -> faithfulness -> report, each when enabled. A run ends with it
(`plan.run`), and so does an audit (`audit.scheduled`), which merges statistics incrementally and
writes `audit.json` before the report is built, through the chain's two hooks.

Statistics run as Ray tasks over groups of part files and faithfulness as one Ray task with an
attribution actor's resources (a GPU on a cluster). A step with nothing to work on (every row an
error row) is skipped with its reason, which the result records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import ray

from raysattr.config import RunConfig

log = logging.getLogger("raysattr")

StatisticsStep = Callable[[RunConfig, str], dict]


def post_run_chain(
    cfg: RunConfig,
    output_uri: str,
    statistics: StatisticsStep | None = None,
    before_report: Callable[[dict], None] | None = None,
) -> dict:
    """Run the enabled post-run steps on `output_uri`.

    Args:
        cfg: the run (`stats`, `qc`, `report` sections say what is enabled).
        output_uri: the folder holding `attributions/` (a staging folder during an overwrite).
        statistics: how to compute the statistics (default `full_statistics`: every part file).
        before_report: called with the steps' results once statistics and faithfulness are done
            and before the report is built (an audit writes audit.json here).

    Returns:
        `{"stats": ..., "qc": ..., "report": uri}` for the steps that ran.
    """
    done: dict = {}
    if cfg.stats.enabled:
        done["stats"] = (statistics or full_statistics)(cfg, output_uri)
    if cfg.qc.enabled:
        done["qc"] = faithfulness_task(cfg, output_uri)
    if before_report is not None:
        before_report(done)
    if cfg.report.enabled:
        from raysattr.report.build import build_report

        done["report"] = build_report(output_uri, cfg.report)
    return done


def full_statistics(cfg: RunConfig, output_uri: str) -> dict:
    """Dataset statistics of every part file (resumed rows included) as Ray tasks."""
    from raysattr.pipeline.tasks import ray_map
    from raysattr.progress import tracked_map
    from raysattr.stats.run import compute_statistics

    try:
        stats = compute_statistics(output_uri, cfg.stats, map_fn=tracked_map(ray_map, "statistics"))
    except ValueError as exc:  # e.g. every row is an error row: nothing to aggregate
        log.warning("raysattr: statistics skipped: %s", exc)
        return {"skipped": str(exc)}
    log.info(
        "raysattr: statistics over %d rows: %d significant motifs, top %s",
        stats["rows"],
        stats["n_significant"],
        stats["top_motifs"][:3],
    )
    return {k: stats[k] for k in ("rows", "n_significant", "top_motifs", "n_seqlets")}


def faithfulness_task(cfg: RunConfig, output_uri: str) -> dict:
    """Deletion/insertion curves as one Ray task with an actor's resources."""
    from raysattr.qc import faithfulness

    def task():
        return faithfulness(output_uri, cfg).summary

    remote = ray.remote(
        num_gpus=cfg.compute.gpus_per_actor or 0, num_cpus=cfg.compute.cpus_per_actor
    )(task)
    try:
        qc = _wait(remote.remote(), "faithfulness")
    except ray.exceptions.RayTaskError as exc:
        if not isinstance(exc.cause, ValueError):
            raise
        log.warning("raysattr: faithfulness skipped: %s", exc.cause)
        return {"skipped": str(exc.cause)}
    comp = qc["aopc_comprehensiveness"]
    log.info(
        "raysattr: faithfulness: AOPC comprehensiveness %.3f (random %.3f) over %d rows",
        comp["attribution"],
        comp["random"],
        qc["n_rows"],
    )
    return {"aopc_comprehensiveness": comp, "n_rows": qc["n_rows"]}


def _wait(ref, what: str):
    """`ray.get(ref)`, showing that the step is alive while the task runs elsewhere."""
    from raysattr.progress import Progress

    with Progress(what, unit="tasks") as progress:
        while not ray.wait([ref], timeout=1.0)[0]:
            progress.tick()
        progress.update(1)
    return ray.get(ref)
