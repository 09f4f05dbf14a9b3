"""Deletion and insertion curves: every variant input a sampled row needs, their target scores
through the shared batched forward (`raysattr.attribution.predict.predict_rows`), and the
`qc.parquet` table built from them (columns in `raysattr.qc`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from raysattr.attribution.base import ModelForward
from raysattr.attribution.budget import TokenBudget
from raysattr.attribution.predict import predict_rows
from raysattr.qc.sampling import sample_key

ORDERS = ("attribution", "random")
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
    sizes = [len(b) for b in blocks]
    sequences = [variant for block in blocks for variant in block]
    device = forward.loaded.device
    variant_targets = torch.tensor(np.repeat(np.asarray(targets, np.int64), sizes), device=device)

    def target_score(ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
        return forward.from_ids(ids, mask).gather(1, variant_targets[rows, None])[:, 0]

    scores = np.zeros(len(sequences), np.float64)
    predict_rows(target_score, sequences, scores, pad_id, device, budget=budget, max_rows=max_rows)
    return np.split(scores, np.cumsum(sizes)[:-1])


def faithfulness_table(
    forward: ModelForward,
    budget: TokenBudget,
    rows: pa.Table,
    settings: CurveSettings,
    progress: Callable[[int], None] | None = None,
) -> pa.Table:
    """Deletion/insertion scores of sampled attribution rows (the `qc.parquet` table).

    Args:
        forward: the classifier, returning probabilities or logits.
        budget: forward-only token budget (halved on out-of-memory).
        rows: attribution rows with `id`, `target`, `token_ids` `[n + 2]`, `token_attr`
            `[n + 2]` and optionally `length`; one window each.
        settings: fractions, random repeats, seed and the baseline token.
        progress: called with the number of rows each group of rows finished.

    Raises:
        ValueError: a row's `token_ids` and `token_attr` differ in length or hold no content.
    """
    token_ids, token_attr = _checked_columns(rows)
    row_ids, targets = rows["id"].to_pylist(), [int(t) for t in rows["target"].to_pylist()]
    lengths = rows["length"].to_pylist() if "length" in rows.column_names else [None] * len(rows)
    pad_id = int(forward.loaded.special_ids()["pad"] or 0)
    fractions = tuple(float(f) for f in settings.fractions)
    records: list[list[dict]] = [[] for _ in token_ids]
    by_length = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(by_length), ROWS_PER_GROUP):
        group = by_length[start : start + ROWS_PER_GROUP]
        blocks = [
            _variants(token_ids[i], token_attr[i], (row_ids[i], targets[i]), settings)
            for i in group
        ]
        scores = predict_scores(
            forward, budget, blocks, [targets[i] for i in group], pad_id, settings.max_batch_rows
        )
        for i, row_scores in zip(group, scores, strict=True):
            key = (row_ids[i], targets[i], lengths[i], len(token_ids[i]) - 2)
            records[i] = _row_records(key, fractions, row_scores)
        if progress is not None:
            progress(len(group))
    return pa.Table.from_pylist([r for row in records for r in row], schema=QC_SCHEMA)


def _checked_columns(rows: pa.Table) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`token_ids` and `token_attr` per row, checked to align and to frame some content."""
    token_ids = [np.asarray(v, np.int64) for v in rows["token_ids"].to_pylist()]
    token_attr = [np.asarray(v, np.float64) for v in rows["token_attr"].to_pylist()]
    for row_id, ids, attr in zip(rows["id"].to_pylist(), token_ids, token_attr, strict=True):
        if len(ids) != len(attr) or len(ids) < 3:
            raise ValueError(
                f"row id={row_id!r}: token_ids has {len(ids)} entries and token_attr "
                f"{len(attr)}; expected the same length, at least 3 ([CLS] x [SEP])"
            )
    return token_ids, token_attr


def _variants(
    token_ids: np.ndarray, token_attr: np.ndarray, key: tuple[str, int], settings: CurveSettings
) -> np.ndarray:
    """`row_variants` of one row, its random orders seeded by `(id, target)`."""
    # Seeded by the row itself: its random orders do not depend on the sample size.
    rng = np.random.default_rng(sample_key(settings.seed, *key))
    orders = row_orders(token_attr, settings.random_repeats, rng)
    counts = fraction_counts(tuple(settings.fractions), len(token_ids) - 2)
    return row_variants(token_ids, orders, counts, settings.baseline_id)


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
