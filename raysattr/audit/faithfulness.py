"""Faithfulness of attributions: deletion and insertion curves with AOPC against a random-order
control, and a baseline sanity check, on a deterministic sample of a run's `attributions/`.

For each sampled row and each fraction f of `qc.fractions`, the k = ceil(f * n) content tokens
with the highest signed score toward the explained target (`token_attr`, descending) are

- deleted: replaced by the baseline token (`attribution.baseline`: pad | mask | unk), or
- inserted: put back into the all-baseline input (every content token replaced),

and the model re-predicts the target's score: its softmax probability, or its logit when
`attribution.output=logit`. `[CLS]`/`[SEP]` are never replaced. The random control ranks the
tokens in `qc.random_repeats` seeded random orders per row and averages the scores over them.
A row's variants share its length, so they are batched with other rows' variants of similar
length under a forward-only token budget.

- AOPC comprehensiveness = mean over fractions of (p_full - p_deleted): higher = the top tokens
  matter. AOPC sufficiency = mean over fractions of (p_full - p_inserted): lower = the top tokens
  suffice. Both are averaged over rows, for the attribution order and for the random order.
- Baseline sanity: the run's method applied to the baseline input itself (`[CLS] + baseline * n +
  [SEP]`) for a few sampled rows; the largest |token score| must be ~0 for the integrated-gradient
  family (input == baseline). Gradient methods (saliency, ...) need not give 0.

Sampled rows are `status == 'ok'` rows attributed in one window; windowed rows (`windows > 1`)
are skipped and counted. Truncated rows are kept: `token_ids` are the tokens the model saw. The
sample is the `qc.sample_rows` rows with the smallest seeded hash of (id, target): independent of
part-file order and row count, and read in two streaming passes (keys, then the chosen rows).

`qc.parquet`, one row per (id, target, fraction, order):

| column | type | meaning |
|---|---|---|
| `id`, `target` | string, int64 | the row and the class explained |
| `length`, `n_tokens` | int64 | residues; content tokens (between `[CLS]` and `[SEP]`) |
| `fraction`, `order` | float64, string | f; `'attribution'` or `'random'` |
| `k_tokens` | int64 | content tokens replaced or kept: ceil(f * n_tokens) |
| `p_full` | float64 | target score of the unmodified input |
| `p_deleted` | float64 | ... with the top k replaced by the baseline (random: mean of repeats) |
| `p_inserted` | float64 | ... of the all-baseline input with the top k put back |
| `p_baseline` | float64 | ... of the all-baseline input |

`qc.json`: `aopc_comprehensiveness` and `aopc_sufficiency`, each `{attribution, random,
difference}` (difference = attribution - random); `by_target` (the same per class);
`comprehensiveness_win_rate` (share of rows whose comprehensiveness beats random by > 0.01);
`curves` (`fractions`, `deletion` / `insertion` mean scores per order); `n_rows`,
`n_eligible`, `n_skipped` (reason -> rows of the whole output: `windowed`, `status:<code>`);
`baseline_max_abs_attr`, `baseline_sanity_rows`; `p_full_max_abs_diff` (re-predicted vs stored
probability: a different model shows here); `model_fingerprint_match`; `settings` (`qc.*` and
`attribution.{method,output,baseline,n_steps}`); `wall_s`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from raysattr.attribution import AttributionEngine, EngineSettings
from raysattr.attribution.base import ModelForward
from raysattr.attribution.budget import ChunkPlan, TokenBudget, is_out_of_memory
from raysattr.config import RunConfig
from raysattr.io.results import attributions_dataset
from raysattr.io.rundir import QC_SUMMARY, QC_TABLE, RunDir
from raysattr.models import LoadedModel, load_model
from raysattr.tokenize import TokenizedRow

ORDERS = ("attribution", "random")
REQUIRED_COLUMNS = ("id", "target", "status", "token_ids", "token_attr")
FORWARD_ONLY_FACTOR = 4  # a no-grad forward keeps no activations for backward: a larger chunk
SETTINGS_KEYS = ("method", "output", "baseline", "n_steps")  # attribution settings in qc.json
WIN_MARGIN = 0.01  # a row "wins" when its attribution order beats random by this much
ROWS_PER_GROUP = 64  # sampled rows whose variants are built at once (bounds host memory)
QC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("target", pa.int64()),
        ("length", pa.int64()),
        ("n_tokens", pa.int64()),
        ("fraction", pa.float64()),
        ("order", pa.string()),
        ("k_tokens", pa.int64()),
        ("p_full", pa.float64()),
        ("p_deleted", pa.float64()),
        ("p_inserted", pa.float64()),
        ("p_baseline", pa.float64()),
    ]
)


@dataclass
class CurveSettings:
    """How deletion/insertion curves are computed.

    Attributes:
        baseline_id: token id that replaces deleted tokens.
        fractions: fractions of content tokens deleted / inserted, each in (0, 1].
        random_repeats: random orders per row for the control.
        seed: seeds the random orders (per row, from a hash of seed, id and target).
        max_batch_rows: most variants per forward.
    """

    baseline_id: int
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    random_repeats: int = 3
    seed: int = 0
    max_batch_rows: int = 256


@dataclass
class QCResult:
    """What `faithfulness` computed and wrote: the `qc.parquet` table and the `qc.json` dict."""

    table: pa.Table
    summary: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------- sampling
def _sample_key(seed: int, row_id: str, target: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{row_id}\x1f{target}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def sample_keys(output_uri: str, sample_rows: int, seed: int) -> tuple[list, int, dict]:
    """First pass: choose the sample from the key columns only, streaming over the part files.

    Returns:
        `(keys, n_eligible, skipped)`: the chosen `(id, target)` pairs in sample order, the
        number of eligible rows, and reason -> rows not eligible.

    Raises:
        ValueError: no attributions under `output_uri`, or a required column is missing.
    """
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        raise ValueError(
            f"no attributions under {output_uri!r}/attributions (no part-*.parquet files): "
            "run `raysattr run` first"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"{output_uri!r}/attributions lacks column(s) {', '.join(missing)}")
    has_windows = "windows" in dataset.schema.names
    columns = ["id", "target", "status"] + (["windows"] if has_windows else [])
    heap: list[tuple[int, str, int]] = []  # max-heap (negated keys) of the smallest hashes
    skipped: dict[str, int] = {}
    n_eligible = 0
    for batch in dataset.to_batches(columns=columns):
        cols = [batch.column(c).to_pylist() for c in columns]
        windows = cols[3] if has_windows else [1] * batch.num_rows
        for row_id, target, status, n_win in zip(cols[0], cols[1], cols[2], windows, strict=True):
            reason = _ineligible(status, n_win)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            n_eligible += 1
            item = (-_sample_key(seed, row_id, target), row_id, int(target))
            if len(heap) < sample_rows:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    keys = [(row_id, target) for _, row_id, target in sorted(heap, reverse=True)]
    return keys, n_eligible, skipped


def _ineligible(status: str | None, windows: int | None) -> str | None:
    if status != "ok":
        return f"status:{status}"
    if windows is not None and windows > 1:
        return "windowed"
    return None


def read_sample(output_uri: str, keys: list[tuple[str, int]]) -> pa.Table:
    """Second pass: the chosen rows (one per key, in `keys` order), filtered while streaming."""
    dataset = attributions_dataset(output_uri)
    names = dataset.schema.names
    optional = [c for c in ("length", "n_tokens", "probs", "model_fingerprint") if c in names]
    ids = pa.array(sorted({k[0] for k in keys}), pa.string())
    table = dataset.to_table(
        columns=[*REQUIRED_COLUMNS, *optional],
        filter=pc.field("id").isin(ids) & (pc.field("status") == "ok"),
    )
    position = {key: i for i, key in enumerate(keys)}
    first: dict[int, int] = {}  # duplicate ids: the first copy of a key wins
    found = zip(table["id"].to_pylist(), table["target"].to_pylist(), strict=True)
    for j, key in enumerate(found):
        if key in position and position[key] not in first:
            first[position[key]] = j
    return table.take(pa.array([first[i] for i in sorted(first)], pa.int64()))


# ------------------------------------------------------------------------------------ curves
def fraction_counts(fractions: tuple[float, ...], n_tokens: int) -> np.ndarray:
    """Tokens replaced per fraction: ceil(f * n), at least 1 and at most n, `[n_fractions]`."""
    return np.array([min(n_tokens, max(1, math.ceil(f * n_tokens - 1e-9))) for f in fractions])


def row_variants(
    token_ids: np.ndarray, orders: np.ndarray, counts: np.ndarray, baseline_id: int
) -> np.ndarray:
    """Every input the curves of one row need.

    Args:
        token_ids: `[n + 2]` ids with `[CLS]` and `[SEP]`.
        orders: `[n_orders, n]` content-token indices, most important first.
        counts: `[n_fractions]` tokens deleted / inserted per fraction.
        baseline_id: id that replaces content tokens.

    Returns:
        `[2 + n_orders * n_fractions * 2, n + 2]` ids: the full input, the all-baseline input,
        then per order and fraction the deletion and the insertion variant.
    """
    content = token_ids[1:-1]
    n = len(content)
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(n)[None, :].repeat(len(orders), 0), axis=1)
    top = ranks[:, None, :] < counts[None, :, None]  # [n_orders, n_fractions, n]
    deleted = np.where(top, baseline_id, content)
    inserted = np.where(top, content, baseline_id)
    pairs = np.stack([deleted, inserted], axis=2).reshape(-1, n)
    variants = np.concatenate([content[None], np.full((1, n), baseline_id), pairs])
    frame = np.empty((len(variants), n + 2), np.int64)
    frame[:, 0], frame[:, -1], frame[:, 1:-1] = token_ids[0], token_ids[-1], variants
    return frame


def row_orders(token_attr: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """`[1 + repeats, n]` content-token orders: by descending score, then `repeats` random ones.

    Args:
        token_attr: `[n + 2]` scores aligned with the framed ids; NaN ranks last.
    """
    scores = np.nan_to_num(np.asarray(token_attr[1:-1], np.float64), nan=-np.inf)
    by_score = np.argsort(-scores, kind="stable")
    randoms = [rng.permutation(len(scores)) for _ in range(repeats)]
    return np.stack([by_score, *randoms])


def predict_scores(
    forward: ModelForward,
    budget: TokenBudget,
    blocks: list[np.ndarray],
    targets: list[int],
    pad_id: int,
    max_rows: int = 256,
) -> list[np.ndarray]:
    """The target's score for every variant, batched across rows by length.

    Args:
        blocks: per row `[n_variants, seq_len]` ids (framed, unpadded).
        targets: per row the class whose score is returned.

    Returns:
        per row `[n_variants]` float64 scores (probability or logit, as `forward.output`).
    """
    lengths = np.concatenate([np.full(len(b), b.shape[1]) for b in blocks])
    owner = np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)])
    local = np.concatenate([np.arange(len(b)) for b in blocks])
    order = np.argsort(lengths, kind="stable")
    scores = [np.zeros(len(b), np.float64) for b in blocks]
    start = 0
    while start < len(order):
        # Ascending lengths: the last candidate is the longest, so its plan fits the chunk.
        longest = int(lengths[order[min(start + max_rows, len(order)) - 1]])
        rows = budget.plan(longest, 1, max_rows).rows
        chunk = order[start : start + rows]
        sequences = [blocks[owner[j]][local[j]] for j in chunk]
        try:
            values = _forward_chunk(forward, sequences, [targets[owner[j]] for j in chunk], pad_id)
        except Exception as exc:
            if not is_out_of_memory(exc) or not budget.on_oom(ChunkPlan(rows, rows), longest):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for j, value in zip(chunk, values, strict=True):
            scores[owner[j]][local[j]] = value
        start += len(chunk)
    return scores


def _forward_chunk(forward, sequences, targets, pad_id) -> np.ndarray:
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, np.int64)
    mask = np.zeros((len(sequences), width), np.int64)
    for j, s in enumerate(sequences):
        ids[j, : len(s)], mask[j, : len(s)] = s, 1
    device = forward.loaded.device
    with torch.inference_mode():
        out = forward.from_ids(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
    picked = out.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
    return picked.double().cpu().numpy()


def faithfulness_table(
    forward: ModelForward, budget: TokenBudget, rows: pa.Table, settings: CurveSettings
) -> pa.Table:
    """Deletion/insertion scores of sampled attribution rows (the `qc.parquet` table).

    Args:
        forward: the classifier, returning probabilities or logits.
        budget: forward-only token budget (halved on out-of-memory).
        rows: attribution rows with `id`, `target`, `token_ids` `[n + 2]`, `token_attr`
            `[n + 2]` and optionally `length`; one window each.
        settings: fractions, random repeats, seed and the baseline token.

    Raises:
        ValueError: a row's `token_ids` and `token_attr` differ in length or hold no content.
    """
    token_ids = [np.asarray(v, np.int64) for v in rows["token_ids"].to_pylist()]
    token_attr = [np.asarray(v, np.float64) for v in rows["token_attr"].to_pylist()]
    row_ids, targets = rows["id"].to_pylist(), rows["target"].to_pylist()
    for row_id, ids, attr in zip(row_ids, token_ids, token_attr, strict=True):
        if len(ids) != len(attr) or len(ids) < 3:
            raise ValueError(
                f"row id={row_id!r}: token_ids has {len(ids)} entries and token_attr "
                f"{len(attr)}; expected the same length, at least 3 ([CLS] x [SEP])"
            )
    fractions = tuple(float(f) for f in settings.fractions)
    pad_id = int(forward.loaded.special_ids()["pad"] or 0)
    lengths = rows["length"].to_pylist() if "length" in rows.column_names else [None] * len(rows)
    records: list[list[dict]] = [[] for _ in token_ids]
    by_length = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(by_length), ROWS_PER_GROUP):
        group = by_length[start : start + ROWS_PER_GROUP]
        blocks = []
        for i in group:
            # Seeded by the row itself: its random orders do not depend on the sample size.
            rng = np.random.default_rng(_sample_key(settings.seed, row_ids[i], targets[i]))
            orders = row_orders(token_attr[i], settings.random_repeats, rng)
            counts = fraction_counts(fractions, len(token_ids[i]) - 2)
            blocks.append(row_variants(token_ids[i], orders, counts, settings.baseline_id))
        group_targets = [int(targets[i]) for i in group]
        scores = predict_scores(
            forward, budget, blocks, group_targets, pad_id, settings.max_batch_rows
        )
        for i, row_scores in zip(group, scores, strict=True):
            key = (row_ids[i], int(targets[i]), lengths[i], len(token_ids[i]) - 2)
            records[i] = _row_records(key, fractions, row_scores)
    return pa.Table.from_pylist([r for row in records for r in row], schema=QC_SCHEMA)


def _row_records(key: tuple, fractions: tuple[float, ...], scores: np.ndarray) -> list[dict]:
    """`qc.parquet` records of one row from its variant scores (layout of `row_variants`).

    Args:
        key: `(id, target, length, n_tokens)`.
        scores: `[2 + n_orders * n_fractions * 2]`; random orders are averaged.
    """
    pairs = scores[2:].reshape(-1, len(fractions), 2)  # [n_orders, n_fractions, (del, ins)]
    by_order = {"attribution": pairs[0], "random": pairs[1:].mean(axis=0)}
    counts = fraction_counts(fractions, key[3])
    return [
        dict(
            zip(
                QC_SCHEMA.names,
                (*key, fraction, order, int(k), scores[0], *by_order[order][f], scores[1]),
                strict=True,
            )
        )
        for f, (fraction, k) in enumerate(zip(fractions, counts, strict=True))
        for order in ORDERS
    ]


# ----------------------------------------------------------------------------------- summary
def summarize(table: pa.Table) -> dict:
    """AOPC comprehensiveness / sufficiency (attribution, random, difference), overall and per
    target class, the share of rows whose attribution order beats random, and the mean curves.

    Args:
        table: a `qc.parquet` table.
    """
    per_row = _per_row_aopc(table)
    by_target: dict[str, dict] = {}
    for target in sorted({key[1] for key in per_row}):
        subset = [v for key, v in per_row.items() if key[1] == target]
        by_target[str(target)] = {**_contrasts(subset), "n_rows": len(subset)}
    paired = [v for v in per_row.values() if all(o in v for o in ORDERS)]
    wins = [v["attribution"][0] > v["random"][0] + WIN_MARGIN for v in paired]
    return {
        **_contrasts(list(per_row.values())),
        "by_target": by_target,
        "comprehensiveness_win_rate": float(np.mean(wins)) if wins else None,
        "curves": _curves(table),
        "mean_p_full": _mean(table["p_full"].to_numpy()),
        "mean_p_baseline": _mean(table["p_baseline"].to_numpy()),
    }


def _per_row_aopc(table: pa.Table) -> dict:
    """`{(id, target): {order: (comprehensiveness, sufficiency)}}`, each a mean over fractions."""
    scores = (
        table.select(["id", "target", "order"])
        .append_column("comp", pc.subtract(table["p_full"], table["p_deleted"]))
        .append_column("suff", pc.subtract(table["p_full"], table["p_inserted"]))
    )
    grouped = scores.group_by(["id", "target", "order"]).aggregate(
        [("comp", "mean"), ("suff", "mean")]
    )
    per_row: dict = {}
    for r in grouped.to_pylist():
        per_row.setdefault((r["id"], r["target"]), {})[r["order"]] = (
            r["comp_mean"],
            r["suff_mean"],
        )
    return per_row


def _contrasts(per_row: list[dict]) -> dict:
    out = {}
    for index, name in ((0, "aopc_comprehensiveness"), (1, "aopc_sufficiency")):
        means = {o: _mean([v[o][index] for v in per_row if o in v]) for o in ORDERS}
        both = means["attribution"] is not None and means["random"] is not None
        means["difference"] = means["attribution"] - means["random"] if both else None
        out[name] = means
    return out


def _curves(table: pa.Table) -> dict:
    grouped = table.group_by(["order", "fraction"]).aggregate(
        [("p_deleted", "mean"), ("p_inserted", "mean")]
    )
    records = sorted(grouped.to_pylist(), key=lambda r: r["fraction"])
    fractions = sorted({r["fraction"] for r in records})
    curves: dict = {"fractions": fractions, "deletion": {}, "insertion": {}}
    for order in ORDERS:
        mine = [r for r in records if r["order"] == order]
        curves["deletion"][order] = [r["p_deleted_mean"] for r in mine]
        curves["insertion"][order] = [r["p_inserted_mean"] for r in mine]
    return curves


def _mean(values) -> float | None:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if len(values) else None


# ------------------------------------------------------------------------- baseline sanity
def baseline_sanity(
    loaded: LoadedModel, settings: EngineSettings, rows: pa.Table, n_rows: int = 4
) -> float | None:
    """Largest |token score| the method gives the all-baseline input of the first `n_rows` rows.

    Each row's content is replaced by the baseline token and attributed toward the row's own
    target, so input == baseline: integrated-gradient methods must return ~0.

    Returns:
        the max |token_attr| over those rows, or None when none could be attributed.
    """
    settings = replace(settings, adaptive_steps=False, long_policy="truncate")
    sizes = [len(ids) - 2 for ids in rows["token_ids"].to_pylist()[:n_rows]]
    targets = [int(t) for t in rows["target"].to_pylist()[:n_rows]]
    worst = None
    for target in sorted(set(targets)):
        engine = AttributionEngine(loaded, replace(settings, target=f"class:{target}"))
        inputs = [
            _baseline_row(n, engine.baseline_id)
            for n, t in zip(sizes, targets, strict=True)
            if t == target
        ]
        for result in engine.run(inputs):
            if result.ok:
                value = float(np.abs(result.token_attr).max())
                worst = value if worst is None else max(worst, value)
    return worst


def _baseline_row(n_tokens: int, baseline_id: int) -> TokenizedRow:
    starts = np.arange(n_tokens, dtype=np.int32)
    spans = np.stack([starts, starts + 1], axis=1)
    return TokenizedRow(np.full(n_tokens, baseline_id, np.int64), spans, "N" * n_tokens)


# ----------------------------------------------------------------------------------- the run
def faithfulness(
    output_uri: str, cfg: RunConfig, device: str | None = None, sanity_rows: int = 4
) -> QCResult:
    """Sample the run's attributions, compute the curves and the baseline sanity check, and
    write `qc.parquet` and `qc.json` into `output_uri` (local or s3://).

    Args:
        output_uri: the run directory holding `attributions/`.
        cfg: the run's config (`model`, `attribution` and `qc` sections are used).
        device: torch device; None = CUDA when available, else CPU.
        sanity_rows: rows whose all-baseline input is attributed for the sanity check.

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
    engine = _engine(cfg, device)
    budget = TokenBudget(
        engine.budget.value * FORWARD_ONLY_FACTOR, engine.budget.attn_ratio, engine.budget.can_grow
    )
    settings = CurveSettings(engine.baseline_id, tuple(qc.fractions), qc.random_repeats, qc.seed)
    table = faithfulness_table(engine.forward, budget, rows, settings)
    summary = {
        **summarize(table),
        "n_rows": len(rows),
        "n_eligible": n_eligible,
        "n_skipped": skipped,
        "baseline_max_abs_attr": baseline_sanity(engine.loaded, engine.settings, rows, sanity_rows),
        "baseline_sanity_rows": min(sanity_rows, len(rows)),
        **_provenance_checks(rows, table, engine.loaded, attribution.output),
        "settings": {**vars(qc), **{k: getattr(attribution, k) for k in SETTINGS_KEYS}},
        "wall_s": round(time.perf_counter() - started, 3),
    }
    write_qc(output_uri, table, summary)
    return QCResult(table, summary)


def _engine(cfg: RunConfig, device: str | None) -> AttributionEngine:
    """The run's method on a fresh model replica (its forward, baseline and budget are reused)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    eager = "eager" if cfg.attribution.method == "attention" else None
    return AttributionEngine(load_model(cfg.model, device, eager), EngineSettings.from_config(cfg))


def _provenance_checks(rows: pa.Table, table: pa.Table, loaded: LoadedModel, output: str) -> dict:
    """Is this the model that wrote the attributions? Stored vs re-predicted probability and the
    weights' fingerprint (None when the columns are absent or the output is a logit)."""
    gap = None
    if output == "prob" and "probs" in rows.column_names:
        full = {(r["id"], r["target"]): r["p_full"] for r in table.to_pylist()}
        columns = (rows[c].to_pylist() for c in ("id", "target", "probs"))
        gap = max(abs(full[(i, t)] - p[t]) for i, t, p in zip(*columns, strict=True))
    match = None
    if "model_fingerprint" in rows.column_names:
        match = set(rows["model_fingerprint"].to_pylist()) == {loaded.fingerprint}
    return {"p_full_max_abs_diff": gap, "model_fingerprint_match": match}


def write_qc(output_uri: str, table: pa.Table, summary: dict) -> None:
    """Write `qc.parquet` and `qc.json` into `output_uri` (local path or s3://)."""
    out = RunDir(output_uri)
    out.write_parquet(QC_TABLE, table)
    out.write_json(QC_SUMMARY, summary)
