"""Integrated-gradient family: `lig` (embeddings module), `lig_multi` (word / position /
token-type embeddings separately) and `ig` (input word embeddings)."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

from raysattr.attribution.base import PER_TOKEN, Batch, MethodOutput, PathMethod, hidden_sum
from raysattr.attribution.registry import register


@register("lig")
class LayerIG(PathMethod):
    """LIG on `base_model.embeddings` (the seeds' recipe, with a per-row forward)."""

    def __init__(self, forward, integration_method: str = "gausslegendre"):
        super().__init__(forward, integration_method)
        self.captum = LayerIntegratedGradients(forward.from_ids, self.loaded.embeddings)

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        attr, delta = self.integrate(
            self.captum, batch.input_ids, batch.baseline_ids, batch, n_steps, internal_batch_size
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask), delta.detach().float())


@register("lig_multi")
class LayerIGMulti(PathMethod):
    """LIG on the word, position and token-type embedding layers at once (BERT tutorial style).

    Baselines: the baseline ids for words, position 0 (or the padding index for RoBERTa-style
    models) for positions, segment 0 for token types. `token_attr` is the sum of the parts;
    extras hold each part per token (the parts the model has).
    """

    extras = {f"token_attr_{part}": PER_TOKEN for part in ("word", "position", "token_type")}

    def __init__(self, forward, integration_method: str = "gausslegendre"):
        super().__init__(forward, integration_method)
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

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        positions = torch.arange(batch.seq_len, device=batch.input_ids.device)
        positions = (positions + self.position_offset).expand_as(batch.input_ids)
        base_positions = torch.full_like(positions, max(self.position_offset - 1, 0))
        types = torch.zeros_like(batch.input_ids)
        attrs, delta = self.integrate(
            self.captum,
            (batch.input_ids, positions, types),
            (batch.baseline_ids, base_positions, types),
            batch,
            n_steps,
            internal_batch_size,
        )
        scores = [hidden_sum(a, batch.attention_mask) for a in attrs]
        extras = {
            f"token_attr_{name}": s.detach().cpu().numpy()
            for name, s in zip(self.parts, scores, strict=True)
        }
        return MethodOutput(torch.stack(scores).sum(0), delta.detach().float(), extras)


def _offset_positions(config) -> bool:
    from raysattr.models.check import OFFSET_POSITION_MODELS

    return config.model_type in OFFSET_POSITION_MODELS


@register("ig")
class EmbeddingIG(PathMethod):
    """IG on the input word embeddings (position/type embeddings are left to the model)."""

    def __init__(self, forward, integration_method: str = "gausslegendre"):
        super().__init__(forward, integration_method)
        self.captum = IntegratedGradients(forward.from_embeds)

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        with torch.no_grad():
            inputs, baselines = self.embed(batch.input_ids), self.embed(batch.baseline_ids)
        attr, delta = self.integrate(
            self.captum, inputs, baselines, batch, n_steps, internal_batch_size
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask), delta.detach().float())
