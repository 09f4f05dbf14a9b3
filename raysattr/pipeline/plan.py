"""Wire the stages into a Ray Data plan and run it: the only module that imports Ray Data.

files -> read + tokenize (CPU actors) -> repartition -> attribute (actor pool)
      -> write parquet (CPU actors) -> per-row summaries streamed back to the driver
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import ray

from raysattr import __version__
from raysattr.config import RunConfig, to_dict
from raysattr.io.fs import filesystem, write_json
from raysattr.io.results import existing_ids
from raysattr.io.sources import list_inputs, read_file
from raysattr.pipeline.stages import AttributeStage, TokenizeStage, WriteStage, read_files
from raysattr.pipeline.summary import RunSummary

log = logging.getLogger("raysattr")


@dataclass
class RunResult:
    """What a run produced: the summary dict and where the outputs are."""

    summary: dict
    output_uri: str

    def one_line(self) -> str:
        s = self.summary
        errors = ", ".join(f"{k}={v}" for k, v in s["rows"]["error_by_code"].items()) or "none"
        return (
            f"raysattr: {s['rows']['out']} rows written ({s['rows']['ok']} ok, errors: "
            f"{errors}; {s['rows']['skipped_done']} already done) in {s['wall_s']:.1f}s, "
            f"{s['sequences_per_s']:.2f} seq/s -> {self.output_uri}"
        )


def init_ray(address: str | None) -> None:
    """Connect to `address` / `RAY_ADDRESS`, or start Ray in-process with more logical CPUs than
    cores (actors must not take every CPU before the read tasks run: DESIGN §7)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    cpus = max(8, 2 * (os.cpu_count() or 1))
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=512 * 1024**2,
        log_to_driver=True,
    )


def _prepare_output(cfg: RunConfig) -> frozenset:
    """Clear the output for `overwrite`; for `resume`, the ids already written."""
    fs, root = filesystem(cfg.output.uri)
    directory = root.rstrip("/") + "/attributions"
    if cfg.output.mode == "overwrite":
        if fs.exists(directory):
            fs.rm(directory, recursive=True)
        return frozenset()
    return existing_ids(cfg.output.uri)


def _check_first_file(uri: str, cfg: RunConfig) -> None:
    """Fail before starting actors when columns are missing or the file is unreadable."""
    next(iter(read_file(uri, cfg.data)), None)


def build_dataset(cfg: RunConfig, files: list, done_ids: frozenset, run_id: str):
    """The lazy Ray Data plan for `cfg` (nothing runs until it is consumed)."""
    c = cfg.compute
    ds = ray.data.from_items([{"uri": f.uri} for f in files], override_num_blocks=len(files))
    ds = ds.map_batches(
        read_files,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"cfg": cfg, "done_ids": done_ids},
    )
    if cfg.data.limit:
        ds = ds.limit(cfg.data.limit)
    ds = ds.map_batches(
        TokenizeStage,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
    )
    # After tokenizing (not before: Ray fuses it into the read and re-bundles) so that every
    # attribution actor gets blocks of its own.
    ds = ds.repartition(target_num_rows_per_block=c.rows_per_block)
    ds = ds.map_batches(
        AttributeStage,
        fn_constructor_kwargs={"cfg": cfg, "run_id": run_id},
        compute=ray.data.ActorPoolStrategy(min_size=c.min_actors, max_size=c.max_actors),
        num_gpus=c.gpus_per_actor or None,
        num_cpus=c.cpus_per_actor,
        batch_size=c.rows_per_call,
        batch_format="pyarrow",
        runtime_env=_fault_env(),
    )
    return ds.map_batches(
        WriteStage,
        fn_constructor_kwargs={"output_uri": cfg.output.uri},
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
    )


def _fault_env() -> dict | None:
    """Forward the fault-injection variables (tests) to the attribution actors."""
    env = {k: v for k, v in os.environ.items() if k.startswith("RAYSATTR_FAULT_")}
    return {"env_vars": env} if env else None


def run(cfg: RunConfig, files: list | None = None) -> RunResult:
    """Run the attribution job described by `cfg` and write `attributions/` + `summary.json`.

    Args:
        cfg: the run.
        files: `InputFile`s to read (default: every file under `cfg.data.uri`); audits pass the
            files new since the previous audit.
    """
    started = time.time()
    files = list_inputs(cfg.data.uri) if files is None else files
    if not files:
        raise ValueError(f"no input files to process under {cfg.data.uri}")
    _check_first_file(files[0].uri, cfg)
    done_ids = _prepare_output(cfg)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    init_ray(cfg.compute.address)
    summary = RunSummary()
    for batch in build_dataset(cfg, files, done_ids, run_id).iter_batches(
        batch_format="pyarrow", batch_size=None
    ):
        summary.add(batch)
    result = summary.finish(
        wall_s=time.time() - started,
        skipped_done=len(done_ids),
        run_id=run_id,
        config=to_dict(cfg),
        inputs=[vars(f) for f in files],
        versions=_versions(),
    )
    write_json(cfg.output.uri, "summary.json", result)
    finish(cfg, result)
    return RunResult(result, cfg.output.uri)


def finish(cfg: RunConfig, result: dict) -> None:
    """After the attributions: statistics, faithfulness, report (each when enabled). A step that
    has nothing to work on (e.g. every row is an error row) is skipped with its reason."""
    if cfg.stats.enabled:
        result["stats"] = _aggregate(cfg)
    if cfg.qc.enabled:
        result["qc"] = _faithfulness(cfg)
    if cfg.report.enabled:
        from raysattr.report.build import build_report

        result["report"] = build_report(cfg.output.uri, cfg.report)


def _faithfulness(cfg: RunConfig) -> dict:
    """Deletion/insertion curves as one Ray task with an actor's resources (a GPU on a cluster)."""
    from raysattr.audit.faithfulness import faithfulness

    def task():
        return faithfulness(cfg.output.uri, cfg).summary

    remote = ray.remote(
        num_gpus=cfg.compute.gpus_per_actor or 0, num_cpus=cfg.compute.cpus_per_actor
    )(task)
    try:
        qc = ray.get(remote.remote())
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


def _aggregate(cfg: RunConfig) -> dict:
    """Dataset statistics of the whole output (resumed rows included) as Ray tasks."""
    from raysattr.pipeline.aggregate import ray_map
    from raysattr.stats.run import aggregate

    try:
        stats = aggregate(cfg.output.uri, cfg.stats, map_fn=ray_map)
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


def _versions() -> dict:
    import captum
    import torch
    import transformers

    return {
        "raysattr": __version__,
        "torch": torch.__version__,
        "ray": ray.__version__,
        "transformers": transformers.__version__,
        "captum": captum.__version__,
        "pyarrow": pa.__version__,
    }
