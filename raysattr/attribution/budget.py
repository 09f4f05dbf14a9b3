"""Token budget: how many token evaluations one forward+backward chunk may hold on a device, and
the micro-batch plan that follows from it.

Memory of one chunk grows with `examples x (L + L^2 / attn_ratio)`: activations are linear in the
padded length L, attention scores quadratic. IG evaluates `rows x n_steps` examples, so the chunk
(Captum's `internal_batch_size`), not the row count, is what must fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CPU_DEFAULT_BUDGET = 4096  # measured on bert-base: internal_batch_size ~16 at 250 tokens
# CPU work per token scales with hidden x layers: smaller models get proportionally larger
# chunks (fewer, overhead-bound passes otherwise), up to this factor (benchmarks/engine.py).
CPU_REFERENCE_SIZE = 768 * 12
CPU_MAX_SCALE = 32
MIN_BUDGET = 1


@dataclass
class ChunkPlan:
    """Rows in a micro-batch and Captum's `internal_batch_size` for it."""

    rows: int
    internal_batch_size: int


class TokenBudget:
    """Per-device budget: starts from config or an estimate, halves on out-of-memory, and on CUDA
    grows by 25 % after `grow_after` clean micro-batches, never again past a size that failed.

    Args:
        initial: starting budget in token evaluations per chunk.
        attn_ratio: hidden_size * 8 / heads; where the L^2 attention term equals the linear one.
        can_grow: grow after clean runs (CUDA); off when the user fixed the budget.
    """

    def __init__(
        self, initial: int, attn_ratio: float, can_grow: bool = False, grow_after: int = 8
    ):
        self.value = max(MIN_BUDGET, int(initial))
        self.attn_ratio = max(float(attn_ratio), 1.0)
        self.can_grow = can_grow
        self.grow_after = grow_after
        self.ceiling: int | None = None
        self.clean_runs = 0
        self.oom_count = 0

    def cost(self, seq_len: int) -> float:
        """Budget units one example of padded length `seq_len` uses."""
        return seq_len * (1.0 + seq_len / self.attn_ratio)

    def plan(self, seq_len: int, evals_per_row: int, max_rows: int) -> ChunkPlan:
        """Rows per micro-batch and chunk size at `seq_len` for a method costing `evals_per_row`.

        With room for all evaluations of several rows, one chunk holds them all (one pass per
        micro-batch); otherwise a single row is split into chunks of what fits.
        """
        chunk = max(1, int(self.value // self.cost(seq_len)))
        if chunk >= evals_per_row:
            rows = max(1, min(max_rows, chunk // evals_per_row))
            return ChunkPlan(rows, rows * evals_per_row)
        return ChunkPlan(1, chunk)

    def on_oom(self, failed_plan: ChunkPlan, seq_len: int) -> bool:
        """Halve after an out-of-memory error. Returns False when already at one example."""
        self.oom_count += 1
        self.clean_runs = 0
        used = int(failed_plan.internal_batch_size * self.cost(seq_len))
        self.ceiling = min(self.ceiling or used, used)
        if failed_plan.internal_batch_size <= 1 and failed_plan.rows <= 1:
            return False
        self.value = max(MIN_BUDGET, min(self.value, used) // 2)
        return True

    def on_success(self) -> None:
        self.clean_runs += 1
        if not self.can_grow or self.clean_runs < self.grow_after:
            return
        self.clean_runs = 0
        grown = int(self.value * 1.25)
        if self.ceiling is not None:
            grown = min(grown, int(self.ceiling * 0.9))
        self.value = max(self.value, grown)


def initial_budget(
    device: torch.device, hidden_size: int, n_layers: int, configured: int | None
) -> tuple[int, bool]:
    """`(budget, can_grow)` for `device`: the configured value (fixed), or an estimate.

    On CUDA the estimate takes half the free memory over an approximate per-token cost of a
    forward+backward (24 fp32 activations of `hidden_size` per layer); the OOM back-off and
    growth correct it. On CPU the measured sweet spot for bert-base, scaled up for smaller
    models by bert-base's hidden x layers over theirs (at most `CPU_MAX_SCALE`).
    """
    if configured is not None:
        return int(configured), False
    if device.type != "cuda":
        scale = CPU_REFERENCE_SIZE / max(hidden_size * max(n_layers, 1), 1)
        return int(CPU_DEFAULT_BUDGET * min(max(scale, 1.0), CPU_MAX_SCALE)), False
    free, _total = torch.cuda.mem_get_info(device)
    per_token = 24 * 4 * hidden_size * max(n_layers, 1)
    return max(256, int(0.5 * free / per_token)), True


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, or the CPU allocator's failure, which torch raises as RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def model_budget(device: torch.device, config, configured: int | None) -> TokenBudget:
    """A replica's token budget from its model config (`hidden_size`, layers, heads): the
    configured one, or `initial_budget`'s estimate for `device`."""
    budget, can_grow = initial_budget(
        device, config.hidden_size, getattr(config, "num_hidden_layers", 1), configured
    )
    heads = getattr(config, "num_attention_heads", 1)
    return TokenBudget(budget, config.hidden_size * 8 / heads, can_grow)
