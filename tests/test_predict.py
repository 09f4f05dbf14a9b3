"""The one batched prediction primitive (`attribution.predict`): padding must not change a row's
scores, the token budget sizes the chunks, and out-of-memory halves the budget and retries until
every row is scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysattr.attribution.base import ModelForward
from raysattr.attribution.budget import TokenBudget
from raysattr.attribution.predict import pad_batch, predict_rows

from .factories import random_dna_model


@pytest.fixture(scope="module")
def forward(tmp_path_factory) -> ModelForward:
    return ModelForward(random_dna_model(tmp_path_factory.mktemp("predict")), "prob")


def _rows(lengths, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[2], rng.integers(5, 69, n), [3]]) for n in lengths]


def _probs(forward: ModelForward):
    def score(ids, mask, rows):
        return forward.from_ids(ids, mask)

    return score


def test_pad_batch_right_pads_with_a_mask():
    ids, mask = pad_batch([np.array([2, 7, 8, 3]), np.array([2, 3])], pad_id=0)
    assert ids.tolist() == [[2, 7, 8, 3], [2, 3, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.int64
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([], pad_id=0)


def test_padded_chunks_equal_row_by_row(forward):
    rows = _rows([9, 40, 3, 17, 17, 25])
    batched = np.zeros((len(rows), 2), np.float32)
    budget = TokenBudget(10**6, 64)
    predict_rows(_probs(forward), rows, batched, 0, budget=budget, max_rows=64)
    for row, got in zip(rows, batched, strict=True):
        ids = torch.from_numpy(row)[None]
        with torch.no_grad():
            alone = forward.from_ids(ids, torch.ones_like(ids))[0].numpy()
        np.testing.assert_allclose(got, alone, atol=1e-6)
    assert len({tuple(r) for r in batched}) == len(rows)  # rows differ, so do their scores


def test_budget_sizes_chunks_and_rows_come_back_in_input_order():
    rows = _rows([30, 5, 12, 5, 30, 1])
    seen = []

    def score(ids, mask, chunk):
        seen.append((len(chunk), int(ids.shape[1])))
        assert (mask.sum(dim=1) == torch.tensor([len(rows[i]) for i in chunk])).all()
        return torch.tensor(chunk, dtype=torch.float64)  # each row's own index

    out = np.full(len(rows), -1.0)
    budget = TokenBudget(64, attn_ratio=1e9)  # 64 tokens per chunk: 2 rows of 32, 9 of 7 ...
    assert predict_rows(score, rows, out, 0, budget=budget, max_rows=4) == {}
    assert out.tolist() == list(range(len(rows)))
    assert all(n * width <= 64 for n, width in seen)
    assert [w for _, w in seen] == sorted(w for _, w in seen)  # length-sorted chunks


def test_injected_oom_halves_the_budget_and_returns_every_row(forward):
    rows = _rows([9, 40, 3, 17, 17, 25, 11, 8])
    sizes = []

    def flaky(ids, mask, chunk):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return forward.from_ids(ids, mask)

    budget = TokenBudget(10**6, 64)
    out = np.full((len(rows), 2), np.nan, np.float32)
    assert predict_rows(flaky, rows, out, 0, budget=budget, max_rows=64) == {}
    assert budget.oom_count >= 1 and budget.value < 10**6
    assert sizes[0] == len(rows) and max(sizes[budget.oom_count :]) <= 2
    expected = np.zeros_like(out)
    predict_rows(_probs(forward), rows, expected, 0, budget=TokenBudget(10**6, 64))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_failures_raise_unless_kept_and_then_stay_per_row():
    rows = [np.array([2, 5, 3]), np.array([2, 99, 3]), np.array([2, 6, 7, 3])]

    def bad_token(ids, mask, chunk):
        if (ids == 99).any():
            raise IndexError("index out of range in self")
        return ids.sum(dim=1)

    with pytest.raises(IndexError):
        predict_rows(bad_token, rows, np.zeros(3), 0)
    out = np.full(3, -1.0)
    failures = predict_rows(bad_token, rows, out, 0, keep_failures=True)
    assert failures == {
        1: ("attribution_failed", "prediction failed: IndexError: index out of range in self")
    }
    assert out.tolist() == [10.0, -1.0, 18.0]

    def always_oom(ids, mask, chunk):
        raise torch.OutOfMemoryError("injected")

    with pytest.raises(torch.OutOfMemoryError):  # no budget to shrink
        predict_rows(always_oom, rows, np.zeros(3), 0)
    with pytest.raises(torch.OutOfMemoryError):  # one row that still does not fit
        predict_rows(always_oom, rows, np.zeros(3), 0, budget=TokenBudget(10**6, 64))
    kept = predict_rows(
        always_oom, rows, np.zeros(3), 0, budget=TokenBudget(10**6, 64), keep_failures=True
    )
    assert {code for code, _ in kept.values()} == {"oom"} and len(kept) == 3
    with pytest.raises(ValueError, match="one per sequence"):
        predict_rows(bad_token, rows, np.zeros(2), 0)
