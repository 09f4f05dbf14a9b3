"""A method that lives outside raysattr: this one file, named in `attribution.method_modules`,
is all it takes (`tests/test_plugin_method.py` runs it through the whole pipeline).

`grad_l2`: the L2 norm, over the hidden axis, of the gradient of the target's score with respect
to each token's word embedding. No steps, no convergence delta; one extra per row.
"""

from __future__ import annotations

import torch

from raysattr.attribution.base import PER_ROW, AttributionMethod, Batch, MethodOutput
from raysattr.attribution.registry import register


@register("grad_l2")
class GradientL2(AttributionMethod):
    """`||d F_target / d embedding||_2` per token, `[batch, seq_len]` (padding 0), and the norm
    of the whole row's gradient as the extra `grad_norm`."""

    extras = {"grad_norm": PER_ROW}

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        mask = batch.attention_mask.float()
        with torch.enable_grad():
            embeds = self.embed(batch.input_ids).detach().requires_grad_(True)
            scores = self.forward.from_embeds(embeds, batch.attention_mask)
            # Rows are independent, so the gradient of the sum is each row's own gradient.
            picked = scores.gather(1, batch.targets[:, None]).sum()
            (grad,) = torch.autograd.grad(picked, embeds)
        per_token = grad.float().norm(dim=-1) * mask  # [batch, seq_len]
        row_norm = per_token.pow(2).sum(dim=1).sqrt()  # [batch]
        return MethodOutput(per_token, extras={"grad_norm": row_norm})
