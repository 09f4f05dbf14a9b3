"""`attention`: attention each token receives (head-averaged, over real query positions), last
layer and all layers, plus per-row agreement with an attribution method (the Longformer seed's
table as columns). `token_attr` is the last-layer attention; the compared attribution is kept
as `token_attr_compare`."""

from __future__ import annotations

import numpy as np
import torch

from raysattr.attribution.agreement import agreement_table
from raysattr.attribution.base import AttributionMethod, Batch, MethodOutput
from raysattr.attribution.registry import get_method, register


@register("attention")
class AttentionSummary(AttributionMethod):
    uses_steps = True  # the compared attribution integrates
    needs_eager_attention = True

    def __init__(self, forward, compare_method: str = "lig"):
        super().__init__(forward)
        if compare_method == "attention":
            raise ValueError("attribution.compare_method cannot be 'attention' itself")
        self.compare = get_method(compare_method)(forward)
        self.has_delta = self.compare.has_delta
        model = self.loaded.model
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")  # SDPA kernels return no weights

    @classmethod
    def from_settings(cls, forward, settings):
        return cls(forward, settings.compare_method)

    def evals_per_row(self, n_steps: int) -> int:
        return self.compare.evals_per_row(n_steps) + 1

    def received(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention received per key token, `([batch, seq_len] last, [batch, seq_len] all)`."""
        with torch.no_grad():
            out = self.loaded.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                output_attentions=True,
                **self.forward._extra_kwargs(batch.attention_mask),
            )
        mask = batch.attention_mask.float()
        weights = mask / mask.sum(dim=1, keepdim=True)  # mean over real query rows
        per_layer = [
            torch.einsum("bqk,bq->bk", a.float().mean(dim=1), weights) * mask
            for a in out.attentions
        ]
        return per_layer[-1], torch.stack(per_layer).mean(dim=0)

    def attribute(self, batch: Batch, n_steps, internal_batch_size, integration_method):
        compared = self.compare.attribute(batch, n_steps, internal_batch_size, integration_method)
        last, every = self.received(batch)
        attr = compared.token_attr.detach().cpu().numpy()
        extras = {
            "attention_last": last.cpu().numpy(),
            "attention_all": every.cpu().numpy(),
            "token_attr_compare": attr,
        }
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for layer, attn in (("last", extras["attention_last"]), ("all", extras["attention_all"])):
            # Content tokens only: [CLS] and [SEP] soak up attention and would dominate.
            rows = [
                agreement_table(attr[i, 1 : n - 1], attn[i, 1 : n - 1])
                for i, n in enumerate(lengths)
            ]
            for key in rows[0]:
                extras[f"agree_{layer}_{key}"] = np.array([r[key] for r in rows], np.float32)
        return MethodOutput(last, compared.delta, extras)
