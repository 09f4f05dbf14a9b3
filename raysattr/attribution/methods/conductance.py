"""`layer_conductance`: Captum LayerConductance of every encoder layer -> a layers x tokens
matrix per row. `token_attr` is the mean over layers (each layer's conductance sums to about
F(x) - F(x'), so the mean keeps completeness and its delta is the mean of the layer deltas)."""

from __future__ import annotations

import torch
from captum.attr import LayerConductance

from raysattr.attribution.base import (
    PER_LAYER_TOKEN,
    Batch,
    MethodOutput,
    PathMethod,
    hidden_sum,
)
from raysattr.attribution.registry import register


@register("layer_conductance")
class LayerConductancePerLayer(PathMethod):
    extras = {"layer_attr": PER_LAYER_TOKEN}

    def __init__(self, forward, integration_method: str = "gausslegendre"):
        super().__init__(forward, integration_method)
        self.layers = self.loaded.encoder_layers()
        self.captum = [LayerConductance(forward.from_embeds, layer) for layer in self.layers]

    def evals_per_row(self, n_steps: int) -> int:
        # Each layer is a separate integral; chunks are sized for one layer at a time.
        return n_steps + 1

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        with torch.no_grad():
            inputs, baselines = self.embed(batch.input_ids), self.embed(batch.baseline_ids)
        per_layer, deltas = [], []
        for lc in self.captum:
            attr, delta = self.integrate(lc, inputs, baselines, batch, n_steps, internal_batch_size)
            per_layer.append(hidden_sum(attr, batch.attention_mask))
            deltas.append(delta.detach().float())
        matrix = torch.stack(per_layer, dim=1)  # [batch, layers, seq_len]
        return MethodOutput(
            matrix.mean(dim=1),
            torch.stack(deltas).mean(dim=0),
            {"layer_attr": matrix.detach().cpu().numpy()},
        )
