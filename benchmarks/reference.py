"""A converged LIG reference map for one row: adaptive composite Gauss-Legendre through Captum.

Why not Captum's LIG with many uniform nodes: on the demo-trained model F(α) jumps from 0 to 1
over a stretch of the path narrower than 1/1,024 on some rows, so even 1,024 Gauss-Legendre
nodes break completeness by 0.2-1.1 of |F(x) - F(x')| there (measured in the fourth session).
This reference is independent of raysattr's path rule (`raysattr/attribution/quadrature.py`):

- the integrand is the same as Captum's `LayerIntegratedGradients` on the embeddings layer: the
  embeddings' output replaced by `e' + α (e - e')` (a forward hook) and the gradient of the
  target's softmax probability with respect to it;
- each panel [a, b] of the path is one Captum `IntegratedGradients.attribute` call with
  `baselines = e' + a (e - e')`, `inputs = e' + b (e - e')` and `method="gausslegendre"`, so the
  panels' attributions sum to the whole path's (IG is additive over sub-paths);
- a panel's error is the L2 distance (over tokens) between its `NODES`- and `2 * NODES`-node
  estimates; the panels holding the largest half of the summed error are bisected until the sum
  is below `tolerance * |map|`, the 2·NODES estimates being kept.

The printed checks say whether to trust it: its own completeness (sum of the map against
F(x) - F(x'), which the adaptive rule does not look at) and, on request, the same reference at a
10x tighter tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients

NODES = 8  # Gauss-Legendre nodes per panel (and 2x for the error estimate)
START_PANELS = 32
MAX_PANELS = 4096
BATCH = 512  # examples per forward+backward


@dataclass
class Reference:
    """`token_attr [n_tokens + 2]`, its completeness residual relative to |gap|, panels used."""

    token_attr: np.ndarray
    completeness_rel: float
    panels: int
    evaluations: int


def row_ids(loaded, row) -> tuple[torch.Tensor, torch.Tensor]:
    """`([1, n_tokens + 2] ids, the same with every content token the padding id)`."""
    sp = loaded.special_ids()
    ids = torch.tensor([[sp["cls"], *row.content_ids.tolist(), sp["sep"]]], device=loaded.device)
    base = ids.clone()
    base[0, 1:-1] = sp["pad"]
    return ids, base


def row_path(loaded, row, target: int):
    """`(f, e', e)`: `path_function` of `row` and its embeddings at the baseline and input."""
    ids, base = row_ids(loaded, row)
    with torch.no_grad():
        e1, e0 = loaded.embeddings(input_ids=ids), loaded.embeddings(input_ids=base)
    return path_function(loaded, ids, target), e0, e1


def path_function(loaded, ids: torch.Tensor, target: int):
    """`f(values [n, L, H]) -> [n]`: the target's probability with the embeddings replaced."""
    model = loaded.model

    def f(values: torch.Tensor) -> torch.Tensor:
        hook = loaded.embeddings.register_forward_hook(lambda *_: values)
        try:
            logits = model(input_ids=ids.expand(len(values), -1)).logits
        finally:
            hook.remove()
        return torch.softmax(logits, dim=-1)[:, target]

    return f


def _panel_maps(ig, e0, e1, panels: list[tuple[float, float]], n: int) -> np.ndarray:
    """`[len(panels), L]` token attributions of each panel with `n` Gauss-Legendre nodes."""
    lo = torch.tensor([a for a, _ in panels], dtype=e0.dtype, device=e0.device).view(-1, 1, 1)
    hi = torch.tensor([b for _, b in panels], dtype=e0.dtype, device=e0.device).view(-1, 1, 1)
    d = e1 - e0
    attr = ig.attribute(
        e0 + hi * d,
        baselines=e0 + lo * d,
        n_steps=n,
        method="gausslegendre",
        internal_batch_size=BATCH,
    )
    return attr.sum(-1).detach().double().cpu().numpy()


def converged_reference(loaded, row, target: int, tolerance: float = 1e-4) -> Reference:
    """The reference map of `row` (a `TokenizedRow`) for class `target`."""
    f, e0, e1 = row_path(loaded, row, target)
    ig = IntegratedGradients(f)
    edges = np.linspace(0.0, 1.0, START_PANELS + 1)
    panels = list(zip(edges[:-1], edges[1:], strict=True))
    maps, errors, evaluations = {}, {}, 0
    todo = panels
    while True:
        coarse = _panel_maps(ig, e0, e1, todo, NODES)
        fine = _panel_maps(ig, e0, e1, todo, 2 * NODES)
        evaluations += 3 * NODES * len(todo)
        for p, c, m in zip(todo, coarse, fine, strict=True):
            maps[p], errors[p] = m, float(np.linalg.norm(m - c))
        total = sum(maps.values())
        err = np.array([errors[p] for p in maps])
        if err.sum() <= tolerance * np.linalg.norm(total) or len(maps) >= MAX_PANELS:
            break
        todo = _bisect(maps, errors)
    with torch.no_grad():
        gap = float(f(e1) - f(e0))
    residual = abs(total.sum() - gap) / max(abs(gap), 1e-4)
    return Reference(total.astype(np.float32), residual, len(maps), evaluations)


def _bisect(maps: dict, errors: dict) -> list[tuple[float, float]]:
    """Remove the panels holding the largest half of the summed error; return their halves."""
    order = sorted(maps, key=lambda p: -errors[p])
    budget, held, split = 0.5 * sum(errors.values()), 0.0, []
    for p in order:
        if held >= budget:
            break
        held += errors[p]
        split.append(p)
    todo = []
    for a, b in split:
        del maps[(a, b)], errors[(a, b)]
        mid = 0.5 * (a + b)
        todo += [(a, mid), (mid, b)]
    return todo
