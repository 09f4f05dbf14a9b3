"""`raysattr audit`: run the job on a dataset snapshot into `audit.root/<audit_id>/`, compare with
the previous audit, write `audit.json` and the report. Exit code 0 = within thresholds (or first
audit), 3 = drift (the failed checks are named), other non-zero = failure.

Incremental mode processes only input files that are new since the previous audit (manifest of
path, size and etag/mtime) and merges their statistics into the previous audit's merged state,
with the previous seqlet threshold so the partials stay comparable. A changed or removed file
cannot be subtracted from merged statistics, so it makes the audit a full one (the reason is
recorded). Either way the audit describes the whole snapshot: its statistics are the merged
ones, and `snapshot` in audit.json (rows, error rows, delta histogram) adds this audit's
summary.json, which covers only the rows it attributed, to the previous audit's `snapshot`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict

from raysattr.audit.drift import compare
from raysattr.audit.samples import Totals
from raysattr.config import RunConfig
from raysattr.io.rundir import AUDIT, SUMMARY, RunDir
from raysattr.io.sources import InputFile, list_inputs
from raysattr.pipeline.plan import init_ray, run
from raysattr.pipeline.postrun import post_run_chain

log = logging.getLogger("raysattr")
DRIFT_EXIT = 3


def latest_audit(root_uri: str, exclude: str) -> str | None:
    """The last audit directory (by name: ids sort by time) under `root_uri` with an audit.json."""
    root = RunDir(root_uri)
    for name in reversed(root.names()):
        if name != exclude and root.child(name).exists(AUDIT):
            return root.uri_of(name)
    return None


def plan_files(now: list[InputFile], before: list[dict] | None, incremental: bool):
    """(files to process, files reused, mode, reason)."""
    if not incremental:
        return now, 0, "full", "audit.incremental=false"
    if before is None:
        return now, 0, "full", "no previous audit manifest"
    previous = {f["uri"]: (f["size"], f["version"]) for f in before}
    current = {f.uri for f in now}
    changed = [f.uri for f in now if f.uri in previous and previous[f.uri] != (f.size, f.version)]
    removed = sorted(set(previous) - current)
    if changed or removed:
        return now, 0, "full", f"changed {changed[:5]} / removed {removed[:5]} since the last audit"
    new = [f for f in now if f.uri not in previous]
    return new, len(now) - len(new), "incremental", f"{len(new)} new file(s)"


def run_audit(cfg: RunConfig) -> dict:
    """Run one audit; returns the content of its audit.json (`status`: baseline | ok | drift)."""
    started = time.time()
    a = cfg.audit
    audit_id = a.audit_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_uri = RunDir(a.root).uri_of(audit_id)
    previous = a.previous or latest_audit(a.root, exclude=audit_id)
    before = RunDir(previous).read_json(AUDIT) if previous else None
    manifest = list_inputs(cfg.data.uri)
    files, reused, mode, reason, prev_state = _plan(manifest, previous, before, a.incremental)
    log.info("raysattr: audit %s (%s: %s), previous: %s", audit_id, mode, reason, previous)
    rows = _attribute(cfg, out_uri, files)
    result = {
        "audit_id": audit_id,
        "output": out_uri,
        "previous": previous,
        "mode": mode,
        "mode_reason": reason,
        "files_processed": [f.uri for f in files],
        "files_reused": reused,
        "rows_processed": rows,
        "manifest": [vars(f) for f in manifest],
        "top_k": a.top_k,
        "thresholds": asdict(a.thresholds),
    }

    def write_audit(_steps: dict) -> None:  # after statistics and qc, before the report
        totals = _snapshot_totals(out_uri, previous, before, mode)
        result["snapshot"] = {**totals[0].as_dict(), "rows_attributed": rows}
        result.update(_verdict(out_uri, previous, a, totals, mode == "incremental"))
        result["wall_s"] = time.time() - started
        RunDir(out_uri).write_json(AUDIT, result)

    def merge(_cfg: RunConfig, uri: str) -> dict:  # previous merged state + the new rows
        return merge_statistics(uri, prev_state)

    audit_cfg = copy.deepcopy(cfg)
    audit_cfg.output.uri = out_uri
    steps = post_run_chain(
        audit_cfg, out_uri, merge if mode == "incremental" else None, before_report=write_audit
    )
    if "report" in steps:
        result["report"] = steps["report"]
    return result


def _plan(manifest: list[InputFile], previous: str | None, before: dict | None, incremental):
    """(files to process, files reused, mode, reason, previous merged statistics state)."""
    files, reused, mode, reason = plan_files(manifest, (before or {}).get("manifest"), incremental)
    if mode != "incremental":
        return files, reused, mode, reason, None
    if "snapshot" not in before:  # written by an older raysattr: its totals are unknown
        return manifest, 0, "full", "previous audit.json has no snapshot totals", None
    prev_state = _previous_state(previous)
    if prev_state is None:
        return manifest, 0, "full", "previous audit has no stats_state.pkl", None
    return files, reused, mode, reason, prev_state


def _snapshot_totals(
    out_uri: str, previous: str | None, before: dict | None, mode: str
) -> tuple[Totals, Totals]:
    """(this snapshot, the previous one): rows, error rows and delta histogram. This audit's
    summary.json covers the rows it attributed, which in an incremental audit are added to the
    previous snapshot's."""
    attributed = Totals.of_summary(RunDir(out_uri).read_json(SUMMARY))
    if not previous:
        return attributed, Totals()
    if before and "snapshot" in before:
        old = Totals.of_dict(before["snapshot"])
    else:  # an audit written before snapshot totals existed: a full one is its summary
        old = Totals.of_summary(RunDir(previous).read_json(SUMMARY))
    return (old + attributed if mode == "incremental" else attributed), old


def _verdict(
    out_uri: str, previous: str | None, a, totals: tuple[Totals, Totals], incremental: bool
) -> dict:
    """The drift checks against the previous audit, or a baseline verdict for the first one."""
    if not previous:
        return {"status": "baseline", "checks": [], "drift": [], "motifs_gained": [],
                "motifs_lost": []}  # fmt: skip
    checks = compare(out_uri, previous, a.top_k, a.thresholds, totals, incremental)
    return {**checks, "status": "drift" if checks["drift"] else "ok"}


def _previous_state(previous: str | None):
    from raysattr.stats.run import load_state

    return load_state(previous) if previous else None


def _attribute(cfg: RunConfig, out_uri: str, files: list) -> int:
    """The attribution job on `files` into `out_uri`, without the post-run chain (the audit runs
    it around its drift checks). Returns rows written."""
    run_cfg = copy.deepcopy(cfg)
    run_cfg.output.uri, run_cfg.output.mode = out_uri, "overwrite"
    if not files:
        init_ray(cfg.compute.address)  # the chain's statistics and qc tasks still run
        RunDir(out_uri).write_json(
            SUMMARY, {"rows": {"out": 0, "ok": 0, "error": 0, "error_by_code": {}}}
        )
        return 0
    return run(run_cfg, files=files, post_run=False).summary["rows"]["out"]


def merge_statistics(out_uri: str, prev_state, map_fn=None) -> dict:
    """The incremental audit's statistics step: the previous merged state + partials of the part
    files under `out_uri` (the new rows, cut at the previous seqlet threshold) -> stats files
    and stats_state.pkl of the whole snapshot. `map_fn`: how batches are mapped (Ray tasks by
    default)."""
    from raysattr.stats.passes import compute_state, merge_states
    from raysattr.stats.run import finalize, save_state, write_outputs

    if map_fn is None:
        from raysattr.pipeline.tasks import ray_map as map_fn
    files = RunDir(out_uri).part_files()
    state = prev_state
    if files:
        new = compute_state(out_uri, prev_state.settings, map_fn, files, prev_state.threshold)
        state = merge_states(prev_state, new)
    outputs = finalize(state)
    write_outputs(out_uri, outputs)
    save_state(out_uri, state)
    stats = outputs["stats.json"]
    return {k: stats[k] for k in ("rows", "n_significant", "top_motifs", "n_seqlets")}
