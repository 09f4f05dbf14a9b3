"""Wire the stages into a Ray Data plan and run it: the only module that imports Ray Data.

files -> read -> tokenize (CPU tasks) -> repartition -> attribute (actor pool)
      -> write parquet (CPU tasks) -> per-row summaries streamed back to the driver
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import ray

from raysattr import __version__
from raysattr.config import ComputeConfig, RunConfig, to_dict
from raysattr.errors import RunFailedError
from raysattr.io.results import ResumeKeys, counted_resume_keys
from raysattr.io.rundir import REPORT, SUMMARY, RunDir, new_run_id
from raysattr.pipeline.postrun import post_run_chain
from raysattr.pipeline.preflight import Checked, preflight
from raysattr.pipeline.raylog import (
    DRIVER_LOG,
    StderrFilter,
    init_options,
    quiet_ray_data,
    session_log_dir,
)
from raysattr.pipeline.resources import check_output_shared, ensure_resources
from raysattr.pipeline.skipped import LimitStage
from raysattr.pipeline.stages import (
    AttributeStage,
    read_files,
    sort_window,
    tokenize_block,
    write_block,
)
from raysattr.pipeline.summary import RunSummary
from raysattr.progress import Progress

log = logging.getLogger("raysattr")


@dataclass
class RunResult:
    """What a run produced: the summary dict and where the outputs are."""

    summary: dict
    output_uri: str

    def one_line(self) -> str:
        s = self.summary
        errors = ", ".join(f"{k}={v}" for k, v in s["rows"]["error_by_code"].items()) or "none"
        n_beyond = s["rows"].get("beyond_limit")
        beyond = f", {n_beyond} beyond data.limit" if n_beyond else ""
        return (
            f"raysattr: {s['rows']['out']} rows written ({s['rows']['ok']} ok, errors: "
            f"{errors}; {s['rows']['skipped_done']} already done{beyond}) in {s['wall_s']:.1f}s, "
            f"{s['sequences_per_s']:.2f} seq/s -> {self.output_uri}"
        )


def init_ray(address: str | None) -> bool:
    """Connect to `address` / `RAY_ADDRESS`, or start Ray in-process with more logical CPUs than
    cores (actors must not take every CPU before the read tasks run). Returns whether nodes may
    join (a cluster we connected to, or a session someone else started) rather than a Ray this
    call started alone, which has no autoscaler."""
    if ray.is_initialized():
        return True
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **init_options(local=False))
        return True
    cpus = max(8, 2 * (os.cpu_count() or 1))
    ray.init(
        "local",  # a new Ray, even when `ray start` left one running on this machine
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=512 * 1024**2,
        **init_options(local=True),
    )
    return False


@contextmanager
def driver_arrow_pool() -> Iterator[None]:
    """Arrow's system allocator (malloc) for the driver's own Arrow work while a run lasts,
    unless the user chose a pool (`ARROW_DEFAULT_MEMORY_POOL`); the previous pool afterwards.

    pyarrow's default, mimalloc, keeps the pages it freed in the heaps of the threads that
    used them (the scan's reads, Ray Data's batch threads), so the driver's RSS rose with the
    length of a run while Arrow's live bytes stayed under 4 MiB: on the workload of
    benchmarks/pipeline.py `--memory-scale`, the driver's peak grew +13 MiB from 20k to 100k
    rows with mimalloc, +2.7 MiB with malloc, and the scan of 1M ids alone peaked +39 MiB
    against +8 MiB (NOTES.md, "Flat driver memory"). The driver
    moves little data, so the allocator's speed does not matter there; the Ray workers keep
    the default.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)  # buffers remember their pool: freeing them stays safe


RESUME_FILES_PER_TASK = 64  # part files whose keys one Ray task hashes (one object each)


def resume_key_refs(output_uri: str) -> tuple[list, int]:
    """The keys of the rows already written under `output_uri`, built by Ray tasks over groups
    of part files and left in the object store (the driver holds refs, never a row's key), and
    how many ids they hold."""
    paths = RunDir(output_uri).part_files()
    groups = [
        paths[i : i + RESUME_FILES_PER_TASK] for i in range(0, len(paths), RESUME_FILES_PER_TASK)
    ]
    task = ray.remote(num_returns=2)(counted_resume_keys)  # imports only raysattr.io
    refs = [task.remote(output_uri, group) for group in groups]
    return [keys for keys, _ in refs], sum(ray.get([n for _, n in refs]))


def _read_resuming(batch: pa.Table, resume_refs: list, **kwargs):
    """`read_files` with the resume keys fetched from the object store (zero-copy) here, in
    the read task."""
    yield from read_files(batch, resume=ResumeKeys.union(ray.get(resume_refs)), **kwargs)


def build_dataset(cfg: RunConfig, checked: Checked, resume_refs: list | None, run_id: str):
    """The lazy Ray Data plan for `cfg` (nothing runs until it is consumed); `resume_refs`:
    `resume_key_refs` of the output (None: nothing is skipped)."""
    c = cfg.compute
    files = checked.files
    ds = ray.data.from_items([{"uri": f.uri} for f in files], override_num_blocks=len(files))
    ds = ds.map_batches(
        read_files if resume_refs is None else _read_resuming,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={
            "cfg": cfg,
            **({} if resume_refs is None else {"resume_refs": resume_refs}),
            "later_copies": checked.scan.later_copies,
            "first_copies": checked.scan.first_copies,
        },
    )
    if cfg.data.limit:
        ds = limit_rows(ds, cfg.data.limit, resume_refs is not None)
    # Tokenizing and writing run as tasks: Ray keeps their worker processes (and the tokenizer
    # each caches) warm between runs, where an actor pool starts fresh processes every run.
    ds = ds.map_batches(
        tokenize_block, batch_size=None, batch_format="pyarrow", fn_kwargs={"cfg": cfg}
    )
    ds = route_by_length(ds, c)
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
        write_block,
        batch_size=None,
        batch_format="pyarrow",
        fn_kwargs={"output_uri": cfg.output.uri, "run_id": run_id},
    )


def limit_rows(ds, limit: int, resuming: bool):
    """The first `limit` rows to read (`data.limit`): Ray Data's `limit`, which stops the read
    tasks early, or in a run that skips rows already written one `LimitStage` actor (no model,
    a fraction of a CPU), which counts no carrier as a row read and lets every file be read
    to its end, so that `skipped_done` counts every row already written (`pipeline.skipped`)."""
    if not resuming:
        return ds.limit(limit)
    return ds.map_batches(
        LimitStage,
        fn_constructor_kwargs={"limit": limit},
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.1,
        batch_size=None,
        batch_format="pyarrow",
    )


def route_by_length(ds, c: ComputeConfig):
    """Order tokenized rows by length before the attribution actors (`compute.length_routing`),
    then cut them into blocks of `rows_per_block` consecutive rows.

    Ray Data merges the tables one task yields into one output block, so a stage cannot emit
    one block per bucket: rows are sorted instead, the streaming repartition cuts the sorted
    order into slices of neighbouring lengths, and `AttributeStage` makes one engine call per
    bucket in a slice. `window` sorts each window of `length_window_rows` rows (streaming,
    bounded); `sort` is Ray Data's global sort and `groupby` one group per bucket, both all-to-all
    (nothing reaches an actor before every row is tokenized); `none` keeps blocks as read.
    Measured in benchmarks/pipeline.py (docs/ARCHITECTURE.md "Length routing").
    """
    if c.length_routing == "window":
        ds = ds.repartition(target_num_rows_per_block=c.length_window_rows)
        ds = ds.map_batches(sort_window, batch_size=c.length_window_rows, batch_format="pyarrow")
    elif c.length_routing == "sort":
        ds = ds.sort("n_tokens")
    elif c.length_routing == "groupby":
        ds = ds.groupby("bucket").map_groups(sort_window, batch_format="pyarrow")
    # After tokenizing (not before: Ray fuses it into the read and re-bundles) so that every
    # attribution actor gets blocks of its own.
    return ds.repartition(target_num_rows_per_block=c.rows_per_block)


def _fault_env() -> dict | None:
    """Forward the fault-injection variables (tests) to the attribution actors."""
    env = {k: v for k, v in os.environ.items() if k.startswith("RAYSATTR_FAULT_")}
    return {"env_vars": env} if env else None


def run(cfg: RunConfig, files: list | None = None, post_run: bool = True) -> RunResult:
    """Run the attribution job described by `cfg` and write `attributions/` + `summary.json`
    (then statistics, faithfulness and the report).

    Everything checkable is checked first (`preflight`), then the output's lease is taken. An
    `overwrite` run writes into a staging folder and replaces the previous results only when it
    succeeded; a `resume` run adds part files for the rows not yet written.

    Args:
        cfg: the run.
        files: `InputFile`s to read (default: every file under `cfg.data.uri`); audits pass the
            files new since the previous audit.
        post_run: end with the post-run chain (`pipeline.postrun`: statistics, faithfulness,
            report, as enabled); audits run it themselves, around their drift checks.

    Raises:
        RaysattrError: pre-flight failures, a held lease, missing resources, no ok row.
    """
    with driver_arrow_pool():
        return _run(cfg, files, post_run)


def _run(cfg: RunConfig, files: list | None, post_run: bool) -> RunResult:
    started, run_id = time.time(), new_run_id()
    checked = preflight(cfg, files)
    out = RunDir(str(cfg.output.uri))
    lease = out.acquire_lease(run_id, cfg.output.lease_ttl_s)
    overwrite = cfg.output.mode == "overwrite"
    target = out.staging(run_id) if overwrite else out
    try:
        result = _run_into(target, cfg, checked, run_id, started, post_run)
        if overwrite:
            out.commit(target, lease)
            if "report" in result:
                result["report"] = out.uri_of(REPORT)
    except BaseException:
        if overwrite:
            out.remove(target.root.rsplit("/", 1)[-1])  # the previous results stay as they were
        raise
    finally:
        lease.release()
    return RunResult(result, out.uri)


def _run_into(
    target: RunDir, cfg: RunConfig, checked: Checked, run_id: str, started: float, post_run: bool
) -> dict:
    """Attribute into `target` (the output, or its staging folder), then the post-run chain."""
    resume = cfg.output.mode == "resume"
    quarantined = target.quarantine_unreadable_parts() if resume else []
    autoscaling = init_ray(cfg.compute.address)
    ensure_resources(cfg.compute, autoscaling)
    check_output_shared(cfg.output, ray.nodes())  # after the autoscaler added the actors' nodes
    done_refs, n_done = resume_key_refs(target.uri) if resume else (None, 0)
    done_refs = done_refs if n_done else None  # nothing written yet: nothing to skip or count
    run_cfg = copy.deepcopy(cfg)
    run_cfg.output.uri = target.uri
    summary = _attribute(
        build_dataset(run_cfg, checked, done_refs, run_id), _to_do(cfg, checked, n_done)
    )
    result = summary.finish(
        wall_s=time.time() - started,
        input_rows=checked.scan.total_rows,
        duplicates=checked.scan,
        quarantined=quarantined,
        run_id=run_id,
        config=to_dict(cfg),
        inputs=[vars(f) for f in checked.files],
        versions=_versions(),
    )
    target.write_json(SUMMARY, result)
    # Duplicate-id rows are bookkeeping of the `error` policy, not failures: a resume whose
    # only new rows are later copies did its job.
    failures = {k for k in result["rows"]["error_by_code"] if k != "duplicate_id"}
    if result["rows"]["ok"] == 0 and failures:
        raise RunFailedError(
            f"no row could be attributed ({result['rows']['out']} error rows: "
            + ", ".join(f"{k}={v}" for k, v in result["rows"]["error_by_code"].items())
            + ")",
            f"data.uri={cfg.data.uri!r}",
            "see the `error` column of the error rows"
            + ("; the previous results were kept" if not resume else ""),
        )
    if post_run:
        result.update(post_run_chain(run_cfg, target.uri))
    return result


def _to_do(cfg: RunConfig, checked: Checked, n_done: int) -> int:
    """Input rows this run should read: all (or `data.limit`), less those already written."""
    rows = checked.scan.total_rows
    return max(min(rows, cfg.data.limit) if cfg.data.limit else rows - n_done, 0)


def _attribute(ds, to_do: int) -> RunSummary:
    """Consume the plan: the packed per-block summaries streamed back, with progress in input
    rows.

    Blocks are fetched from their refs, not through `iter_batches`: Ray Data's batch iterator
    sends its whole `DatasetStats` (which grows with the blocks of the run, ~200 KB a call at
    300k rows) to its stats actor every 5 s, and each such argument is written into the object
    store by the driver, whose memory then keeps every store page it wrote (docs/ARCHITECTURE.md
    "The driver holds no per-row state").
    """
    quiet_ray_data()
    summary = RunSummary()
    with StderrFilter(_driver_log()), Progress("attribute", to_do or None) as progress:
        for bundle in ds.iter_internal_ref_bundles():
            for block in ray.get(bundle.block_refs):
                before = summary.rows_read
                summary.add(block)
                progress.update(summary.rows_read - before)
    return summary


def _driver_log():
    folder = session_log_dir()
    return folder / DRIVER_LOG if folder is not None else None


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
