"""The entry point: `faithfulness(output_uri, cfg)` samples a run's attributions, computes the
curves and the summary, and writes `qc.parquet` and `qc.json` through `write_qc`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import torch

from raysattr.attribution import AttributionEngine
from raysattr.attribution.budget import TokenBudget
from raysattr.config import RunConfig
from raysattr.io.rundir import QC_SUMMARY, QC_TABLE, RunDir
from raysattr.qc.curves import CurveSettings, faithfulness_table
from raysattr.qc.sampling import read_sample, sample_keys
from raysattr.qc.summary import baseline_sanity, provenance_checks, summarize

FORWARD_ONLY_FACTOR = 4  # a no-grad forward keeps no activations for backward: a larger chunk
SETTINGS_KEYS = ("method", "output", "baseline", "n_steps")  # attribution settings in qc.json


@dataclass
class QCResult:
    """What `faithfulness` computed and wrote: the `qc.parquet` table and the `qc.json` dict."""

    table: pa.Table
    summary: dict = field(default_factory=dict)


def faithfulness(
    output_uri: str,
    cfg: RunConfig,
    device: str | None = None,
    sanity_rows: int = 4,
    progress: Callable[[int], None] | None = None,
) -> QCResult:
    """Sample the run's attributions, compute the curves and the baseline sanity check, and
    write `qc.parquet` and `qc.json` into `output_uri` (local or s3://).

    Args:
        output_uri: the run directory holding `attributions/`.
        cfg: the run's config (`model`, `attribution` and `qc` sections are used).
        device: torch device; None = CUDA when available, else CPU.
        sanity_rows: rows whose all-baseline input is attributed for the sanity check.
        progress: called with the number of sampled rows each step of the curves finished.

    Raises:
        ValueError: nothing written under `output_uri`, no eligible row, or a malformed row.
    """
    started = time.perf_counter()
    qc, attribution = cfg.qc, cfg.attribution
    keys, n_eligible, skipped = sample_keys(output_uri, qc.sample_rows, qc.seed)
    if not keys:
        raise ValueError(
            f"{output_uri!r}/attributions has no row with status 'ok' in one window to check "
            f"(not eligible: {skipped or 'none'})"
        )
    rows = read_sample(output_uri, keys)
    # A fresh replica loaded as the method asks (`attribution.method_modules` imported, eager
    # attention when it reads attention weights): its forward, baseline and budget are reused.
    engine = AttributionEngine.load(cfg, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = CurveSettings(engine.baseline_id, tuple(qc.fractions), qc.random_repeats, qc.seed)
    table = faithfulness_table(engine.forward, _forward_budget(engine), rows, settings, progress)
    summary = {
        **summarize(table),
        "n_rows": len(rows),
        "n_eligible": n_eligible,
        "n_skipped": skipped,
        "baseline_max_abs_attr": baseline_sanity(engine, rows, sanity_rows),
        "baseline_sanity_rows": min(sanity_rows, len(rows)),
        **provenance_checks(rows, table, engine.loaded, attribution.output),
        "settings": {**vars(qc), **{k: getattr(attribution, k) for k in SETTINGS_KEYS}},
        "wall_s": round(time.perf_counter() - started, 3),
    }
    write_qc(output_uri, table, summary)
    return QCResult(table, summary)


def _forward_budget(engine: AttributionEngine) -> TokenBudget:
    """The engine's budget scaled for forward-only passes (its own copy: halving it on
    out-of-memory does not shrink the engine's attribution chunks)."""
    budget = engine.budget
    return TokenBudget(budget.value * FORWARD_ONLY_FACTOR, budget.attn_ratio, budget.can_grow)


def write_qc(output_uri: str, table: pa.Table, summary: dict) -> None:
    """Write `qc.parquet` and `qc.json` into `output_uri` (local path or s3://)."""
    out = RunDir(output_uri)
    out.write_parquet(QC_TABLE, table)
    out.write_json(QC_SUMMARY, summary)
