"""One batched, padded, budgeted forward pass over token-id rows: `predict_rows`.

Every prediction in raysattr goes through it: the engine's probabilities before attributing
(`BatchPredictor`, failures kept per row), the faithfulness check's target scores
(`raysattr.qc.curves.predict_scores`) and the demo trainer's held-out predictions. Rows are sorted
by length, cut into chunks that fit the token budget, right-padded to the chunk's longest row with
an attention mask (`pad_batch`, which the trainer also uses for its training batches) and scored;
results land in input order. Out-of-memory halves the budget and retries the chunk; any other
failure raises, or, when failures are kept, retries the chunk row by row so only the failing row
is lost (one bad row, a token id past the embedding say, used to fail a whole block).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from raysattr.attribution.budget import ChunkPlan, TokenBudget, is_out_of_memory

# (input_ids [rows, seq_len], attention_mask [rows, seq_len], row indices) -> [rows, ...] values
ScoreFn = Callable[[torch.Tensor, torch.Tensor, list[int]], torch.Tensor]


def pad_batch(
    sequences: Sequence[np.ndarray], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows to the longest one.

    Args:
        sequences: `[seq_len]` ids each (specials included); at least one.
        pad_id: id written after each row's end.
        device: where the tensors go.

    Returns:
        `(input_ids, attention_mask)`, each `[batch, max_len]` int64; the mask is 1 on real tokens.
    """
    if not len(sequences):
        raise ValueError("pad_batch requires at least one sequence; got 0")
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, np.int64)
    mask = np.zeros((len(sequences), width), np.int64)
    for j, s in enumerate(sequences):
        ids[j, : len(s)], mask[j, : len(s)] = s, 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def predict_rows(
    score: ScoreFn,
    sequences: Sequence[np.ndarray],
    out: np.ndarray,
    pad_id: int,
    device: torch.device | str = "cpu",
    *,
    budget: TokenBudget | None = None,
    max_rows: int = 64,
    keep_failures: bool = False,
) -> dict[int, tuple[str, str]]:
    """Score `sequences` in length-sorted, padded chunks under `torch.no_grad`.

    Args:
        score: `(input_ids, attention_mask, rows)` -> `[len(rows), ...]` values for one padded
            chunk; `rows` index `sequences` (to pick per-row targets, say).
        sequences: `[seq_len]` ids each, specials included.
        out: `[len(sequences), ...]` array filled in place, in input order; rows that fail are
            left untouched.
        pad_id: padding token id.
        device: where the ids go.
        budget: sizes the chunks (one forward-only evaluation per row) and is halved on
            out-of-memory; None = `max_rows` rows per chunk and out-of-memory is raised.
        max_rows: most rows per chunk.
        keep_failures: False = any error but a recoverable out-of-memory is raised. True = a
            failing chunk is retried row by row, and a row that still fails is returned.

    Returns:
        row index -> `(error code, message)` of the rows that failed (`oom` or
        `attribution_failed`); always empty when `keep_failures` is False.

    Raises:
        ValueError: `out` does not have one entry per sequence.
    """
    if len(out) != len(sequences):
        raise ValueError(f"out has {len(out)} rows; expected one per sequence ({len(sequences)})")
    run = _ChunkRunner(score, sequences, out, pad_id, device, budget, keep_failures)
    pending = deque(sorted(range(len(sequences)), key=lambda i: len(sequences[i])))
    while pending:
        # Sorted ascending: the last candidate is the longest, so its plan is safe for all.
        last = pending[min(max_rows, len(pending)) - 1]
        rows = budget.plan(len(sequences[last]), 1, max_rows).rows if budget else max_rows
        run([pending.popleft() for _ in range(min(rows, len(pending)))], pending)
    return run.failures


@dataclass
class _ChunkRunner:
    """One `predict_rows` call's state: what to score, where results and failures go."""

    score: ScoreFn
    sequences: Sequence[np.ndarray]
    out: np.ndarray
    pad_id: int
    device: torch.device | str
    budget: TokenBudget | None
    keep_failures: bool
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)

    def __call__(self, chunk: list[int], pending: deque) -> None:
        ids, mask = pad_batch([self.sequences[i] for i in chunk], self.pad_id, self.device)
        try:
            with torch.no_grad():
                values = self.score(ids, mask, chunk)
        except Exception as exc:  # noqa: BLE001 - retried, isolated, or raised below
            if not self._recover(exc, chunk, pending, int(ids.shape[1])):
                raise
            return
        self.out[chunk] = values.detach().cpu().numpy()

    def _recover(self, exc: Exception, chunk: list[int], pending: deque, seq_len: int) -> bool:
        """Handle a failed chunk; False = the error is to be raised."""
        if is_out_of_memory(exc) and self.budget is not None:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if self.budget.on_oom(ChunkPlan(len(chunk), len(chunk)), seq_len):
                pending.extendleft(reversed(chunk))
                return True
        if not self.keep_failures:
            return False
        if is_out_of_memory(exc):
            self.failures[chunk[0]] = (
                "oom",
                f"out of memory predicting one row of {seq_len} tokens; use a larger device or "
                "tokenize.long_policy=window",
            )
        elif len(chunk) > 1:  # isolate the row that fails
            for i in chunk:
                self([i], pending)
        else:
            message = f"prediction failed: {type(exc).__name__}: {exc}"
            self.failures[chunk[0]] = ("attribution_failed", message)
        return True


def out_of_range_token(ids: np.ndarray, embedding_rows: int) -> str | None:
    """A message when a token id is not a row of the word embedding, else None.

    Checked before any forward pass: on CUDA such an id is a device-side assert that poisons the
    whole process, not an exception one could retry.
    """
    if not len(ids):
        return None
    low, high = int(ids.min()), int(ids.max())
    if low >= 0 and high < embedding_rows:
        return None
    bad = high if high >= embedding_rows else low
    return (
        f"token id {bad} is outside the model's word embedding (ids 0..{embedding_rows - 1}): "
        "the tokenizer does not match the model (model.tokenizer)"
    )


@dataclass
class Prediction:
    """Softmax probabilities per row and the rows that failed.

    Attributes:
        probs: `[n_rows, n_classes]` float32; NaN on failed rows.
        failures: row index -> `(error code, message)`.
    """

    probs: np.ndarray
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)


class BatchPredictor:
    """The engine's prediction: softmax probabilities through `predict_rows`, failures per row.

    Args:
        forward: a `ModelForward` (only `logits(ids, mask)` is used).
        budget: the engine's token budget (shared: an OOM here shrinks attribution chunks too).
        pad_id: padding token id.
        max_rows: most rows per micro-batch.
        device: where the ids go.
    """

    def __init__(self, forward, budget: TokenBudget, pad_id: int, max_rows: int, device):
        self.forward, self.budget, self.pad_id = forward, budget, pad_id
        self.max_rows, self.device = max_rows, device

    def __call__(self, sequences: list[np.ndarray], n_classes: int) -> Prediction:
        """Predict `sequences` (`[seq_len]` ids each, specials included)."""
        probs = np.full((len(sequences), n_classes), np.nan, np.float32)

        def softmax(ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
            return torch.softmax(self.forward.logits(ids, mask).float(), dim=-1)

        failures = predict_rows(
            softmax,
            sequences,
            probs,
            self.pad_id,
            self.device,
            budget=self.budget,
            max_rows=self.max_rows,
            keep_failures=True,
        )
        return Prediction(probs, failures)
