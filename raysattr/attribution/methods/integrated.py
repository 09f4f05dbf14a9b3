"""Integrated-gradient family: `lig` (embeddings module), `lig_multi` (word / position /
token-type embeddings separately) and `ig` (input word embeddings).

Each has two rules (`PathMethod`): `attribute_fixed` is Captum's (`LayerIntegratedGradients` /
`IntegratedGradients` with `n_steps` nodes of `integration_method`), `path_space` gives the
path-aware rule the same straight path: the hooked layers' outputs at x and x' and a forward
that substitutes interpolated values for them (`raysattr.attribution.quadrature`).
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

from raysattr.attribution.base import (
    PER_TOKEN,
    Batch,
    MethodOutput,
    PathMethod,
    hidden_sum,
    pick_target,
)
from raysattr.attribution.quadrature import PathResult, PathSpace, captured, substituted
from raysattr.attribution.registry import register


def layer_path(layers, forward, batch: Batch, args: tuple) -> PathSpace:
    """The path through `layers`' outputs: endpoints from one no-grad forward of inputs and
    baselines, then `forward(*args[rows], mask[rows])` with the layers' outputs substituted.

    Args:
        layers: the hooked modules (LIG's `layer`).
        forward: `forward(*args, attention_mask)` -> `[n, n_classes]`.
        batch: the micro-batch.
        args: `(inputs_args, baseline_args)`: tensors `[rows, seq_len]` passed to `forward`.
    """
    inputs, baselines = args
    n = batch.size
    both = [torch.cat([x, b]) for x, b in zip(inputs, baselines, strict=True)]
    mask2 = torch.cat([batch.attention_mask, batch.attention_mask])
    ends = captured(layers, lambda: forward(*both, mask2))

    def run(values, rows):
        with substituted(layers, values):
            out = forward(*(a[rows] for a in inputs), batch.attention_mask[rows])
        return pick_target(out, batch, rows)

    return PathSpace(
        tuple(e[:n] for e in ends), tuple(e[n:] for e in ends), run, batch.attention_mask, 2 * n
    )


@register("lig")
class LayerIG(PathMethod):
    """LIG on `base_model.embeddings` (the seeds' recipe, with a per-row forward)."""

    def __init__(self, forward, integration_method: str = "gausslegendre", path=None):
        super().__init__(forward, integration_method, path)
        self.captum = LayerIntegratedGradients(forward.from_ids, self.loaded.embeddings)

    def attribute_fixed(self, batch: Batch, n_steps: int, internal_batch_size: int):
        attr, delta = self.integrate(
            self.captum, batch.input_ids, batch.baseline_ids, batch, n_steps, internal_batch_size
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask), delta.detach().float())

    def path_space(self, batch: Batch) -> PathSpace:
        args = ((batch.input_ids,), (batch.baseline_ids,))
        return layer_path([self.loaded.embeddings], self.forward.from_ids, batch, args)


@register("lig_multi")
class LayerIGMulti(PathMethod):
    """LIG on the word, position and token-type embedding layers at once (BERT tutorial style).

    Baselines: the baseline ids for words, position 0 (or the padding index for RoBERTa-style
    models) for positions, segment 0 for token types. `token_attr` is the sum of the parts;
    extras hold each part per token (the parts the model has).
    """

    extras = {f"token_attr_{part}": PER_TOKEN for part in ("word", "position", "token_type")}

    def __init__(self, forward, integration_method: str = "gausslegendre", path=None):
        super().__init__(forward, integration_method, path)
        emb = self.loaded.embeddings
        parts = {
            "word": emb.word_embeddings,
            "position": getattr(emb, "position_embeddings", None),
            "token_type": getattr(emb, "token_type_embeddings", None),
        }
        self.parts = {k: v for k, v in parts.items() if v is not None}
        self.captum = LayerIntegratedGradients(self._forward, list(self.parts.values()))
        config = self.loaded.model.config
        self.position_offset = (config.pad_token_id or 0) + 1 if _offset_positions(config) else 0

    def _forward(self, input_ids, position_ids, token_type_ids, attention_mask):
        types = token_type_ids if "token_type" in self.parts else None
        positions = position_ids if "position" in self.parts else None
        return self.forward.from_ids(input_ids, attention_mask, types, positions)

    def _args(self, batch: Batch):
        positions = torch.arange(batch.seq_len, device=batch.input_ids.device)
        positions = (positions + self.position_offset).expand_as(batch.input_ids)
        base_positions = torch.full_like(positions, max(self.position_offset - 1, 0))
        types = torch.zeros_like(batch.input_ids)
        return (batch.input_ids, positions, types), (batch.baseline_ids, base_positions, types)

    def attribute_fixed(self, batch: Batch, n_steps: int, internal_batch_size: int):
        inputs, baselines = self._args(batch)
        attrs, delta = self.integrate(
            self.captum, inputs, baselines, batch, n_steps, internal_batch_size
        )
        scores = [hidden_sum(a, batch.attention_mask) for a in attrs]
        return self._output(torch.stack(scores, dim=1), delta.detach().float())

    def _output(self, parts: torch.Tensor, delta: torch.Tensor, **counts) -> MethodOutput:
        """`parts` `[batch, n_parts, seq_len]` -> the sum and one extra per part."""
        extras = {
            f"token_attr_{name}": parts[:, i].detach().cpu().numpy()
            for i, name in enumerate(self.parts)
        }
        return MethodOutput(parts.sum(dim=1), delta, extras, **counts)

    def path_space(self, batch: Batch) -> PathSpace:
        return layer_path(list(self.parts.values()), self._forward, batch, self._args(batch))

    def path_output(self, batch: Batch, result: PathResult) -> MethodOutput:
        return self._output(
            result.parts,
            result.delta,
            n_steps=result.nodes,
            grad_evals=result.grad_evals,
            forward_evals=result.forward_evals,
        )


def _offset_positions(config) -> bool:
    from raysattr.models.check import OFFSET_POSITION_MODELS

    return config.model_type in OFFSET_POSITION_MODELS


@register("ig")
class EmbeddingIG(PathMethod):
    """IG on the input word embeddings (position/type embeddings are left to the model)."""

    def __init__(self, forward, integration_method: str = "gausslegendre", path=None):
        super().__init__(forward, integration_method, path)
        self.captum = IntegratedGradients(forward.from_embeds)

    def _ends(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.embed(batch.input_ids), self.embed(batch.baseline_ids)

    def attribute_fixed(self, batch: Batch, n_steps: int, internal_batch_size: int):
        inputs, baselines = self._ends(batch)
        attr, delta = self.integrate(
            self.captum, inputs, baselines, batch, n_steps, internal_batch_size
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask), delta.detach().float())

    def path_space(self, batch: Batch) -> PathSpace:
        inputs, baselines = self._ends(batch)

        def run(values, rows):
            out = self.forward.from_embeds(values[0], batch.attention_mask[rows])
            return pick_target(out, batch, rows)

        return PathSpace((inputs,), (baselines,), run, batch.attention_mask)
