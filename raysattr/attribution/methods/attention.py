"""`attention`: attention each token receives (head-averaged, over real query positions), last
layer and all layers, plus per-row agreement with an attribution method (the Longformer seed's
table as columns). `token_attr` is the last-layer attention; the compared attribution is kept
as `token_attr_compare`."""

from __future__ import annotations

import numpy as np
import torch

from raysattr.attribution.agreement import AGREEMENT_KEYS, agreement_table
from raysattr.attribution.base import PER_ROW, PER_TOKEN, AttributionMethod, Batch, MethodOutput
from raysattr.attribution.registry import get_method, register


@register("attention")
class AttentionSummary(AttributionMethod):
    """Attention received per token beside the attribution of a compared method (`compare`,
    from `attribution.compare_method` with that method's own options); steps and delta are the
    compared method's."""

    needs_eager_attention = True
    uses_steps = True  # the default compared method, lig, integrates; set per instance below
    has_delta = True
    extras = {
        "attention_last": PER_TOKEN,
        "attention_all": PER_TOKEN,
        "token_attr_compare": PER_TOKEN,
        **{f"agree_{layer}_{key}": PER_ROW for layer in ("last", "all") for key in AGREEMENT_KEYS},
    }

    def __init__(self, forward, compare: AttributionMethod | None = None):
        super().__init__(forward)
        self.compare = compare if compare is not None else get_method("lig")(forward)
        self.uses_steps, self.has_delta = self.compare.uses_steps, self.compare.has_delta
        model = self.loaded.model
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")  # SDPA kernels return no weights

    @classmethod
    def from_config(cls, forward, attribution):
        if get_method(attribution.compare_method) is cls:
            raise ValueError("attribution.compare_method cannot be 'attention' itself")
        compare = get_method(attribution.compare_method).from_config(forward, attribution)
        return cls(forward, compare)

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

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        compared = self.compare.attribute(batch, n_steps, internal_batch_size)
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
        return MethodOutput(
            last,
            compared.delta,
            extras,
            n_steps=compared.n_steps,  # the path rule's nodes per row
            grad_evals=compared.grad_evals,
            forward_evals=compared.forward_evals,
        )
