"""Gradient methods on the input word embeddings: `saliency`, `input_x_gradient`, `deeplift`."""

from __future__ import annotations

import torch
from captum.attr import DeepLift, InputXGradient, Saliency

from raysattr.attribution.base import (
    AttributionMethod,
    Batch,
    EmbedsModule,
    MethodOutput,
    hidden_sum,
)
from raysattr.attribution.registry import register


class _EmbeddingGradient(AttributionMethod):
    """Shared body: embed, run the Captum method on `[batch, seq_len, hidden]`, sum hidden."""

    captum_class: type = Saliency
    extra_kwargs: dict = {}

    def __init__(self, forward):
        super().__init__(forward)
        self.captum = self.captum_class(forward.from_embeds)

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        with torch.no_grad():
            inputs = self.embed(batch.input_ids)
        attr = self.captum.attribute(
            inputs,
            target=batch.targets,
            additional_forward_args=(batch.attention_mask,),
            **self.extra_kwargs,
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask))


@register("saliency")
class EmbeddingSaliency(_EmbeddingGradient):
    """|d F / d embedding| summed over the hidden axis (non-negative)."""

    captum_class = Saliency
    extra_kwargs = {"abs": True}


@register("input_x_gradient")
class EmbeddingInputXGradient(_EmbeddingGradient):
    """embedding * d F / d embedding, summed over the hidden axis."""

    captum_class = InputXGradient


@register("deeplift")
class EmbeddingDeepLift(AttributionMethod):
    """Captum DeepLift on the word embeddings against the baseline's embeddings.

    Unreliable on transformers, and the stored delta shows it: DeepLift's rescale rule only
    replaces non-linearities that are `nn.Module`s it knows (ReLU, Sigmoid, Tanh, Softmax ...).
    BERT's GELU, the attention softmax (a functional call) and LayerNorm's division are
    differentiated as plain gradients, so summation-to-delta breaks and |delta| is often of the
    order of F(x) - F(x') itself (the IMDB seed saw the same). Read `delta_rel` before trusting it.
    """

    has_delta = True

    def __init__(self, forward):
        super().__init__(forward)
        self.module = EmbedsModule(forward)
        self.captum = DeepLift(self.module)

    def evals_per_row(self, n_steps: int) -> int:
        return 2  # input and baseline run together

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        with torch.no_grad():
            inputs, baselines = self.embed(batch.input_ids), self.embed(batch.baseline_ids)
        attr, delta = self.captum.attribute(
            inputs,
            baselines=baselines,
            target=batch.targets,
            additional_forward_args=(batch.attention_mask,),
            return_convergence_delta=True,
        )
        return MethodOutput(hidden_sum(attr, batch.attention_mask), delta.detach().float())
