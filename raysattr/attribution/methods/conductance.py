"""`layer_conductance`: Captum LayerConductance of every encoder layer -> a layers x tokens
matrix per row. `token_attr` is the mean over layers (each layer's conductance sums to about
F(x) - F(x'), so the mean keeps completeness and its delta is the mean of the layer deltas).

Conductance is a Stieltjes sum over consecutive nodes (the gradient at one node times the
layer's change to the next), so the path rule's nested Simpson panels do not apply. Under
`quadrature=path` this method uses the same forward-only sweep to place its nodes where F
changes (`quadrature.place_panels`, 0 and 1 included: Captum's fixed rule leaves out the path's
two ends, which is why it converges only as 1/n_steps) and hands them to Captum's
`LayerConductance._attribute(step_sizes_and_alphas=...)`, one row at a time because Captum takes
one node list per call. A row over `delta_tolerance` is redone with twice the nodes (not
nested: keeping every node's hidden-size layer values would cost rows x nodes x layers x tokens
x hidden) until `max_evals`, which here bounds each layer's integral.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerConductance

from raysattr.attribution.base import (
    PER_LAYER_TOKEN,
    Batch,
    MethodOutput,
    PathMethod,
    hidden_sum,
    pick_target,
)
from raysattr.attribution.quadrature import (
    SWEEP_INTERVALS,
    PathSpace,
    evaluate_path,
    place_panels,
)
from raysattr.attribution.registry import register

FIRST_INTERVALS = 16  # path rule: nodes of the first try (+1), doubled per retry


@register("layer_conductance")
class LayerConductancePerLayer(PathMethod):
    extras = {"layer_attr": PER_LAYER_TOKEN}

    def __init__(self, forward, integration_method: str = "gausslegendre", path=None):
        super().__init__(forward, integration_method, path)
        self.layers = self.loaded.encoder_layers()
        self.captum = [LayerConductance(forward.from_embeds, layer) for layer in self.layers]

    def evals_per_row(self, n_steps: int) -> int:
        # Each layer is a separate integral; chunks are sized for one layer at a time.
        return FIRST_INTERVALS + 1 if self.path is not None else n_steps + 1

    def _ends(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.embed(batch.input_ids), self.embed(batch.baseline_ids)

    def attribute_fixed(self, batch: Batch, n_steps: int, internal_batch_size: int):
        inputs, baselines = self._ends(batch)
        per_layer, deltas = [], []
        for lc in self.captum:
            attr, delta = self.integrate(lc, inputs, baselines, batch, n_steps, internal_batch_size)
            per_layer.append(hidden_sum(attr, batch.attention_mask))
            deltas.append(delta.detach().float())
        return _output(torch.stack(per_layer, dim=1), torch.stack(deltas).mean(dim=0))

    def path_space(self, batch: Batch) -> PathSpace:
        inputs, baselines = self._ends(batch)

        def run(values, rows):
            return pick_target(
                self.forward.from_embeds(values[0], batch.attention_mask[rows]), batch, rows
            )

        return PathSpace((inputs,), (baselines,), run, batch.attention_mask)

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        if self.path is None:
            return self.attribute_fixed(batch, n_steps, internal_batch_size)
        space = self.path_space(batch)
        grid = torch.linspace(0, 1, SWEEP_INTERVALS + 1, device=batch.input_ids.device)
        rows = torch.arange(batch.size, device=grid.device).repeat_interleave(len(grid))
        f, _ = evaluate_path(space, rows, grid.repeat(batch.size), False, internal_batch_size)
        sweep = f.view(batch.size, -1).cpu().numpy()
        matrices, deltas, nodes, grad_evals = [], [], [], 0
        for i in range(batch.size):
            matrix, delta, n, spent = self._row(space, batch, i, sweep[i], internal_batch_size)
            matrices.append(matrix)
            deltas.append(delta)
            nodes.append(n)
            grad_evals += spent
        out = _output(torch.stack(matrices), torch.tensor(deltas))
        out.n_steps, out.grad_evals = np.array(nodes), grad_evals
        out.forward_evals = batch.size * len(grid)
        return out

    def _row(self, space: PathSpace, batch: Batch, i: int, sweep: np.ndarray, chunk: int):
        """One row: `([layers, seq_len] conductance, delta, nodes, evaluations spent)`."""
        gap = float(sweep[-1] - sweep[0])
        target = self.path.tolerance * max(abs(gap), self.path.gap_floor)
        intervals, spent = FIRST_INTERVALS, 0
        while True:
            alphas = place_panels(sweep, intervals).tolist()
            matrix = torch.stack(
                [self._layer(lc, space, batch, i, alphas, chunk) for lc in self.captum]
            )
            spent += len(self.layers) * len(alphas)
            delta = float(matrix.mean(0).sum()) - gap
            per_layer = spent / len(self.layers)
            if abs(delta) <= target or per_layer + 2 * intervals + 1 > self.path.max_evals:
                return matrix, delta, len(alphas), spent
            intervals *= 2

    def _layer(self, lc, space, batch: Batch, i: int, alphas: list[float], chunk: int):
        """`[seq_len]` conductance of one layer for row `i` along `alphas` (chunks of nodes that
        overlap by one: a Stieltjes sum splits at any node)."""
        step = max(chunk - 1, 1)
        total = 0
        for start in range(0, len(alphas) - 1, step):
            part = alphas[start : start + step + 1]
            attr = lc._attribute(
                inputs=(space.inputs[0][i : i + 1],),
                baselines=(space.baselines[0][i : i + 1],),
                target=batch.targets[i : i + 1],
                additional_forward_args=(batch.attention_mask[i : i + 1],),
                n_steps=len(part) - 1,
                step_sizes_and_alphas=(None, part),
            )
            total = total + hidden_sum(attr, batch.attention_mask[i : i + 1])[0].detach()
        return total


def _output(matrix: torch.Tensor, delta: torch.Tensor) -> MethodOutput:
    """`[batch, layers, seq_len]` -> the mean over layers, with the matrix as extra."""
    return MethodOutput(matrix.mean(dim=1), delta, {"layer_attr": matrix.detach().cpu().numpy()})
