"""Typed per-row results. Conversion to Arrow happens in `attribution.table`, not here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Bins of `delta_rel` (|delta| / |F(x) - F(x')|) in summary.json and the report's histogram.
DELTA_EDGES = [0, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1.0, math.inf]


@dataclass
class RowResult:
    """The attribution of one input row for one target class.

    Attributes:
        row_index: position of the row in the engine's input list.
        status: "ok" or an error code (`empty_sequence`, `oom`, `attribution_failed`, ...).
        error: message for error rows, else None.
        target: class the attribution explains (-1 on error rows).
        pred: predicted class; probs: `[n_classes]` softmax of the logits.
        token_ids: `[n_tokens + 2]` ids with `[CLS]`/`[SEP]` (the full sequence, before windows).
        token_attr: `[n_tokens + 2]` scores aligned with `token_ids`.
        residue_attr: `[length]` scores per residue of the normalised sequence.
        delta: convergence delta (sum of window deltas), NaN when the method has none.
        delta_rel: largest |delta| / |F(x) - F(x')| over windows, NaN when undefined.
        n_steps: integration steps used (after adaptive refinement), 0 for gradient methods.
        truncated: the sequence was cut at the model's maximum length.
        windows: number of windows the sequence was attributed in (1 normally).
        extras: method-specific arrays (per token along the last axis) and scalars.
        converged: delta_rel <= `attribution.delta_tolerance`; None for methods without a
            delta and for error rows.
        fp32_recomputed: the bf16 guard attributed the row again in fp32.
    """

    row_index: int
    status: str = "ok"
    error: str | None = None
    target: int = -1
    pred: int = -1
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    token_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    token_attr: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    residue_attr: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    delta: float = float("nan")
    delta_rel: float = float("nan")
    n_steps: int = 0
    truncated: bool = False
    windows: int = 0
    n_unknown: int = 0
    extras: dict[str, np.ndarray | float] = field(default_factory=dict)
    converged: bool | None = None
    fp32_recomputed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def attr_l2(self) -> float:
        return float(np.linalg.norm(self.residue_attr)) if len(self.residue_attr) else 0.0
