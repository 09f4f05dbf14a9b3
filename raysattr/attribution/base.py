"""What every attribution method shares: the padded batch it receives, what it returns, and the
model forward that yields one value per row for Captum's `target`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from raysattr.models import LoadedModel


@dataclass
class Batch:
    """A right-padded micro-batch of `[CLS] + ids + [SEP]` rows.

    Attributes:
        input_ids: `[batch, seq_len]` int64.
        baseline_ids: `[batch, seq_len]` int64; content replaced by the baseline token, specials
            and padding kept.
        attention_mask: `[batch, seq_len]` int64, 1 on real tokens.
        targets: `[batch]` int64 class index per row.
    """

    input_ids: torch.Tensor
    baseline_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class MethodOutput:
    """Per-token scores for a batch.

    Attributes:
        token_attr: `[batch, seq_len]` float32; padding positions are exactly 0.
        delta: `[batch]` convergence delta, or None for methods without one.
        extras: name -> array whose first axis is the batch and whose last axis, when it has
            more than one, is `seq_len` (e.g. `[batch, layers, seq_len]`); scalars are `[batch]`.
    """

    token_attr: torch.Tensor
    delta: torch.Tensor | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class ModelForward:
    """The classifier as Captum sees it: `[batch, n_classes]` probabilities or logits.

    Captum picks each row's `target` column, so the function returns one value per row — unlike
    the seed notebooks' `softmax(logits)[0][0]`, which keeps only the first interpolation step.
    """

    def __init__(self, loaded: LoadedModel, output: str = "prob", dtype: str = "float32"):
        self.loaded = loaded
        self.model = loaded.model
        self.output = output
        self.autocast = dtype == "bfloat16"
        self.is_longformer = loaded.model_type == "longformer"

    def _context(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.loaded.device.type, dtype=torch.bfloat16)

    def _extra_kwargs(self, attention_mask: torch.Tensor) -> dict:
        if not self.is_longformer:
            return {}
        # Longformer attends globally from [CLS], as in the Longformer seed.
        global_mask = torch.zeros_like(attention_mask)
        global_mask[:, 0] = 1
        return {"global_attention_mask": global_mask}

    def _finish(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.softmax(logits, dim=-1) if self.output == "prob" else logits

    def from_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[batch, seq_len]` ids -> `[batch, n_classes]`."""
        return self._finish(self.logits(input_ids, attention_mask, token_type_ids, position_ids))

    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[batch, seq_len]` ids -> `[batch, n_classes]` float32 logits."""
        kwargs = self._extra_kwargs(attention_mask)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        with self._context():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out.logits.float()

    def from_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """`[batch, seq_len, hidden]` word embeddings -> `[batch, n_classes]`."""
        with self._context():
            out = self.model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                **self._extra_kwargs(attention_mask),
            )
        return self._finish(out.logits)


class EmbedsModule(nn.Module):
    """`from_embeds` as an `nn.Module`, for Captum methods (DeepLift) that require one."""

    def __init__(self, forward: ModelForward):
        super().__init__()
        self.inner = forward.model
        self._forward = forward

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._forward.from_embeds(inputs_embeds, attention_mask)


class AttributionMethod:
    """Base class: construct the Captum object once, then `attribute(batch, ...)` per batch.

    Class attributes:
        name: config name (set by `@register`).
        has_delta: whether `attribute` returns a convergence delta.
        uses_steps: whether `n_steps` applies (integrated-gradient family).
        needs_eager_attention: whether attention weights must be returned by the model.
    """

    name = "base"
    has_delta = False
    uses_steps = False
    needs_eager_attention = False

    def __init__(self, forward: ModelForward):
        self.forward = forward
        self.loaded = forward.loaded

    @classmethod
    def from_settings(cls, forward: ModelForward, settings) -> AttributionMethod:
        """Build from engine settings; methods with options of their own override this."""
        return cls(forward)

    def evals_per_row(self, n_steps: int) -> int:
        """Forward+backward evaluations one row costs (sizes the token budget chunks)."""
        return n_steps if self.uses_steps else 1

    def attribute(
        self, batch: Batch, n_steps: int, internal_batch_size: int, integration_method: str
    ) -> MethodOutput:
        raise NotImplementedError

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings of `ids`, `[batch, seq_len]` -> `[batch, seq_len, hidden]`."""
        return self.loaded.word_embeddings(ids)


def hidden_sum(attr: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sum over the hidden axis, `[batch, seq_len, hidden]` -> `[batch, seq_len]`, pads set to 0."""
    return attr.float().sum(dim=-1) * attention_mask.to(torch.float32)


def integrate(
    captum_method,
    inputs,
    baselines,
    batch: Batch,
    n_steps: int,
    internal_batch_size: int,
    integration_method: str,
):
    """Call an integrating Captum method (IG, LIG, LayerConductance) the way every method here
    does: per-row targets, the attention mask as extra forward argument, delta returned.

    Returns:
        `(attributions, delta)` as Captum gives them.
    """
    return captum_method.attribute(
        inputs=inputs,
        baselines=baselines,
        target=batch.targets,
        additional_forward_args=(batch.attention_mask,),
        n_steps=n_steps,
        method=integration_method,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
