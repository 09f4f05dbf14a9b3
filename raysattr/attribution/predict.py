"""One batched, padded, budgeted forward pass over token-id rows, with failures kept per row.

The engine predicts every segment before attributing it. One bad row (a token id past the
embedding, say) used to raise for the whole block; now out-of-memory halves the token budget and
retries, and any other failure retries the micro-batch row by row, so only the failing row is lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from raysattr.attribution.budget import ChunkPlan, TokenBudget, is_out_of_memory


@dataclass
class Prediction:
    """Softmax probabilities per row and the rows that failed.

    Attributes:
        probs: `[n_rows, n_classes]` float32; NaN on failed rows.
        failures: row index -> `(error code, message)`.
    """

    probs: np.ndarray
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)


def pad_batch(
    sequences: list[np.ndarray], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to `[batch, max_len]` ids and attention mask on `device`."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, np.int64)
    mask = np.zeros((len(sequences), width), np.int64)
    for j, s in enumerate(sequences):
        ids[j, : len(s)], mask[j, : len(s)] = s, 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


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


class BatchPredictor:
    """Predicts rows in length-sorted micro-batches under the token budget.

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
        result = Prediction(np.full((len(sequences), n_classes), np.nan, np.float32))
        pending = deque(sorted(range(len(sequences)), key=lambda i: len(sequences[i])))
        while pending:
            # Sorted ascending: the last candidate is the longest, so its plan is safe for all.
            last = pending[min(self.max_rows, len(pending)) - 1]
            rows = self.budget.plan(len(sequences[last]), 1, self.max_rows).rows
            chunk = [pending.popleft() for _ in range(min(rows, len(pending)))]
            self._run(sequences, chunk, pending, result)
        return result

    def _run(self, sequences, chunk: list[int], pending: deque, result: Prediction) -> None:
        ids, mask = pad_batch([sequences[i] for i in chunk], self.pad_id, self.device)
        try:
            with torch.no_grad():
                logits = self.forward.logits(ids, mask)
        except Exception as exc:  # noqa: BLE001 - one bad row must not abort the block
            self._recover(exc, sequences, chunk, pending, result, int(ids.shape[1]))
            return
        result.probs[chunk] = torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def _recover(self, exc, sequences, chunk, pending, result, seq_len: int) -> None:
        if is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if self.budget.on_oom(ChunkPlan(len(chunk), len(chunk)), seq_len):
                pending.extendleft(reversed(chunk))
                return
            result.failures[chunk[0]] = (
                "oom",
                f"out of memory predicting one row of {seq_len} tokens; use a larger device or "
                "tokenize.long_policy=window",
            )
            return
        if len(chunk) > 1:  # isolate the row that fails
            for i in chunk:
                self._run(sequences, [i], pending, result)
            return
        message = f"prediction failed: {type(exc).__name__}: {exc}"
        result.failures[chunk[0]] = ("attribution_failed", message)
