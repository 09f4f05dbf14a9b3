"""`raysattr plan`: what a run will cost, before it runs.

Pre-flight (the same checks and id scan a run makes), then one streaming pass through the inputs
with the pipeline's own read and tokenize stages (no model forward): rows and tokens per file,
error rows by code, a histogram by length bucket, the tokens the model will evaluate (framing,
truncation and windows as the engine cuts them), and the model evaluations per row the method's
contract implies. A short calibration probe then attributes a uniform sample of the rows on this
machine (one actor's threads) and measures evaluated tokens per second, unless the user gives
`--tokens-per-s`; wall time and device-hours for N actors follow. Nothing is written.

The estimate covers a run's attribution (what `summary.json` `wall_s` measures), not the
post-run statistics, faithfulness and report. `benchmarks/plan.py` compares it with a real run.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from raysattr.attribution.registry import get_method
from raysattr.config import RunConfig
from raysattr.pipeline.preflight import Checked, preflight
from raysattr.pipeline.raylog import verbose
from raysattr.pipeline.stages import TokenizeStage, length_bucket, read_files, rows_from_table
from raysattr.tokenize import TokenizedRow

STARTUP_S = (
    5.0  # actor process start + imports before a run's first result (benchmarks/pipeline.py)
)
SWEEP_COST = 17 / 3  # path rule: 17 forward-only sweep points at 1/3 of a gradient evaluation
PATH_FIRST_NODES = 9  # path rule: 4 Simpson panels before any refinement


@dataclass
class Bucket:
    """Rows whose framed length falls in one power-of-two bucket."""

    bucket: int
    rows: int = 0
    tokens: int = 0  # content tokens

    @property
    def padding_if_padded_to_top(self) -> float:
        framed = self.tokens + 2 * self.rows
        return 1 - framed / (self.rows * self.bucket) if self.rows else 0.0


@dataclass
class Counts:
    """What the streaming pass counted (exact, the rows a run would read)."""

    files: dict[str, int] = field(default_factory=dict)  # uri -> rows
    rows: int = 0
    ok_rows: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # code -> rows
    tokens: int = 0  # content tokens of the ok rows
    evaluated_tokens: int = 0  # [CLS]+[SEP] framing, truncation and windows applied
    windows: int = 0  # segments: one per ok row, more for windowed rows
    buckets: dict[int, Bucket] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Evaluations:
    """Model evaluations (forward+backward example units) per ok row and target, as the
    method's contract and the attribution settings imply; `measured` from the probe."""

    low: float
    high: float
    targets: int
    rule: str
    measured: float | None = None


@dataclass
class Probe:
    """Calibration on this machine: evaluated tokens per second of one actor."""

    tokens_per_s: float
    source: str  # "probe" or "given"
    rows: int = 0
    seconds: float = 0.0
    load_s: float = 0.0
    device: str = "cpu"


@dataclass
class CostPlan:
    """`raysattr plan`'s answer (`as_dict` for JSON)."""

    counts: Counts
    evaluations: Evaluations
    probe: Probe
    actors: int
    gpus_per_actor: float
    wall_s: float = 0.0
    compute_s: float = 0.0
    startup_s: float = 0.0

    @property
    def actor_hours(self) -> float:
        return self.actors * self.wall_s / 3600

    @property
    def gpu_hours(self) -> float:
        return self.actor_hours * self.gpus_per_actor

    def as_dict(self) -> dict:
        out = asdict(self)
        out["counts"]["buckets"] = [asdict(b) for b in sorted(self.counts.buckets.values(), key=_k)]
        return {**out, "actor_hours": self.actor_hours, "gpu_hours": self.gpu_hours}


def _k(b: Bucket) -> int:
    return b.bucket


def make_plan(
    cfg: RunConfig,
    actors: int | None = None,
    tokens_per_s: float | None = None,
    probe_rows: int = 32,
    seed: int = 0,
) -> CostPlan:
    """Pre-flight, count, calibrate and estimate (see the module docstring).

    Args:
        cfg: the run to plan.
        actors: attribution actors (default `compute.max_actors`).
        tokens_per_s: evaluated tokens per second of one actor; None: measure with a probe.
        probe_rows: rows the probe attributes (a uniform sample).
        seed: of the sample.
    """
    checked = preflight(cfg)
    counts, sample = count_inputs(cfg, checked, probe_rows, seed)
    evals = evaluations(cfg, checked.model.num_labels)
    if tokens_per_s is not None:
        probe = Probe(float(tokens_per_s), "given")
    else:
        probe = calibrate(cfg, sample, evals)
    plan = CostPlan(
        counts, evals, probe, actors or cfg.compute.max_actors, cfg.compute.gpus_per_actor
    )
    plan.startup_s = STARTUP_S + probe.load_s
    rate = max(probe.tokens_per_s, 1e-9) * plan.actors
    plan.compute_s = counts.evaluated_tokens * evals.targets / rate
    plan.wall_s = counts.seconds + plan.startup_s + plan.compute_s
    return plan


def count_inputs(
    cfg: RunConfig, checked: Checked, sample_size: int, seed: int
) -> tuple[Counts, list[TokenizedRow]]:
    """Stream every input through the read and tokenize stages; a uniform sample of ok rows
    (the `sample_size` smallest of a random key per row) rides along for the probe."""
    started, counts = time.perf_counter(), Counts()
    tokenize, rng = TokenizeStage(cfg), np.random.default_rng(seed)
    limit = cfg.data.limit or math.inf
    sample, keys = [], np.zeros(0)
    errors: Counter = Counter()
    for f in checked.files:
        counts.files[f.uri] = 0
        batch = pa.table({"uri": [f.uri]})
        scan = checked.scan
        for table in read_files(batch, cfg, None, scan.later_copies, scan.first_copies):
            table = tokenize(table.slice(0, min(table.num_rows, limit - counts.rows)))
            counts.files[f.uri] += table.num_rows
            counts.rows += table.num_rows
            rows = rows_from_table(table)
            errors.update(r.error_code for r in rows if not r.ok)
            ok = [r for r in rows if r.ok]
            _add_rows(counts, ok, cfg, checked.model.max_content_tokens)
            sample, keys = _keep_smallest(sample, keys, ok, rng.random(len(ok)), sample_size)
            if counts.rows >= limit:
                break
        if counts.rows >= limit:
            break
    counts.errors, counts.ok_rows = dict(sorted(errors.items())), counts.rows - sum(errors.values())
    counts.seconds = time.perf_counter() - started
    return counts, sample


def _add_rows(counts: Counts, rows: list[TokenizedRow], cfg: RunConfig, model_limit: int) -> None:
    """Tokens, evaluated tokens, windows and buckets of ok rows."""
    limit = min(cfg.tokenize.max_length or model_limit, model_limit)
    stride = cfg.tokenize.window_stride or max(1, limit // 2)
    for row in rows:
        n = row.n_tokens
        bucket = counts.buckets.setdefault(length_bucket(n), Bucket(length_bucket(n)))
        bucket.rows, bucket.tokens = bucket.rows + 1, bucket.tokens + n
        counts.tokens += n
        if n <= limit:
            windows, width = 1, n
        elif cfg.tokenize.long_policy == "window":
            windows, width = -(-(n - limit) // stride) + 1, limit
        else:  # truncate (error rows were counted as errors by the tokenizer)
            windows, width = 1, limit
        counts.windows += windows
        counts.evaluated_tokens += windows * (width + 2)


def _keep_smallest(sample: list, keys: np.ndarray, rows: list, new_keys: np.ndarray, k: int):
    """Bottom-k sampling: the k rows with the smallest random keys so far (a uniform sample)."""
    if not rows or k <= 0:
        return sample, keys
    merged, all_keys = sample + rows, np.concatenate([keys, new_keys])
    keep = np.argsort(all_keys)[:k]
    return [merged[i] for i in keep], all_keys[keep]


def evaluations(cfg: RunConfig, num_labels: int) -> Evaluations:
    """Evaluations per ok row and target from the method's contract (`uses_steps`) and the
    attribution settings: 1 for gradient methods; the fixed rule's `n_steps` (adaptive: up to
    `max_steps`); the path rule's sweep and first nodes up to `max_evals`."""
    a = cfg.attribution
    method = get_method(a.method)
    targets = num_labels if a.target == "all" else 1
    if not method.uses_steps:
        return Evaluations(1.0, 1.0, targets, "one gradient")
    if getattr(a, "quadrature", "fixed") == "path":
        low = SWEEP_COST + PATH_FIRST_NODES
        return Evaluations(low, float(max(a.max_evals, low)), targets, "path")
    high = a.max_steps if a.adaptive_steps else a.n_steps
    return Evaluations(float(a.n_steps), float(high), targets, "fixed")


def calibrate(cfg: RunConfig, sample: list[TokenizedRow], evals: Evaluations) -> Probe:
    """Attribute `sample` with the run's engine on one actor's threads, after a warm-up row."""
    import torch
    from transformers.utils import logging as hf_logging

    from raysattr.attribution import AttributionEngine

    if not verbose():  # the weight-loading bar, as actors keep it in their logs
        hf_logging.disable_progress_bar()
    device = "cuda" if cfg.compute.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    if device == "cpu":  # an actor with cpus_per_actor CPUs gets OMP_NUM_THREADS of that
        torch.set_num_threads(max(1, int(cfg.compute.cpus_per_actor)))
    try:
        started = time.perf_counter()
        engine = AttributionEngine.load(cfg, device)
        load_s = time.perf_counter() - started
        if not sample:
            return Probe(0.0, "probe", 0, 0.0, load_s, device)
        engine.run(sample[:1])
        before = getattr(engine, "model_evals", 0), getattr(engine, "forward_evals", 0)
        started = time.perf_counter()
        results = engine.run(sample)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    probe_counts = Counts()
    _add_rows(probe_counts, sample, cfg, engine.loaded.max_content_tokens)
    if hasattr(engine, "model_evals") and results:
        spent = engine.model_evals - before[0] + (engine.forward_evals - before[1]) / 3
        evals.measured = spent / len(results)
    rate = probe_counts.evaluated_tokens * evals.targets / max(seconds, 1e-9)
    return Probe(rate, "probe", len(sample), seconds, load_s, device)


def render(plan: CostPlan) -> list[str]:
    """The plan as lines for a terminal."""
    c, e, p = plan.counts, plan.evaluations, plan.probe
    lines = [f"raysattr plan: {len(c.files)} input file(s), {c.rows:,} rows"]
    lines += [f"  {uri}: {rows:,} rows" for uri, rows in list(c.files.items())[:20]]
    if len(c.files) > 20:
        lines.append(f"  ... and {len(c.files) - 20} more")
    errors = ", ".join(f"{k}={v:,}" for k, v in c.errors.items()) or "none"
    lines.append(
        f"rows: {c.ok_rows:,} to attribute, error rows: {errors}; {c.tokens:,} content tokens, "
        f"{c.evaluated_tokens:,} evaluated ({c.windows:,} segments); counted in {c.seconds:.1f} s"
    )
    lines.append(f"  {'bucket':>8}{'rows':>12}{'tokens':>14}{'mean len':>10}{'pad to top':>12}")
    for b in sorted(c.buckets.values(), key=_k):
        mean = b.tokens / b.rows if b.rows else 0
        lines.append(
            f"  {b.bucket:>8}{b.rows:>12,}{b.tokens:>14,}{mean:>10.0f}"
            f"{100 * b.padding_if_padded_to_top:>11.0f}%"
        )
    measured = f", measured {e.measured:.1f}" if e.measured is not None else ""
    lines.append(
        f"model evaluations per row and target ({e.rule}): {e.low:g}..{e.high:g}{measured}; "
        f"{e.targets} target(s) per row"
    )
    if p.source == "probe":
        rate = f"{p.tokens_per_s:,.0f} evaluated tokens/s per actor ({p.rows} rows in "
        rate += f"{p.seconds:.1f} s on {p.device}, model loaded in {p.load_s:.1f} s)"
    else:
        rate = f"{p.tokens_per_s:,.0f} evaluated tokens/s per actor (given)"
    lines.append(f"calibration: {rate}")
    hours = f"{plan.actor_hours:.2f} actor-hours"
    if plan.gpus_per_actor:
        hours += f", {plan.gpu_hours:.2f} GPU-hours"
    lines.append(
        f"estimate with {plan.actors} actor(s): {plan.wall_s:,.0f} s wall "
        f"(scan {c.seconds:.0f} + start {plan.startup_s:.0f} + attribution "
        f"{plan.compute_s:,.0f}); {hours}"
    )
    return lines
