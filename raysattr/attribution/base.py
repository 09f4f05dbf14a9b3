"""What every attribution method shares: the padded batch it receives, what it returns, and the
model forward that yields one value per row for Captum's `target`."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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


# Shapes of a method's extras (`AttributionMethod.extras`), for slicing rows out of a batch and
# averaging windows: one value per row, one per token, or one per encoder layer and token.
PER_ROW, PER_TOKEN, PER_LAYER_TOKEN = "row", "token", "layer_token"
EXTRA_KINDS = {PER_ROW: 1, PER_TOKEN: 2, PER_LAYER_TOKEN: 3}  # kind -> ndim of the batch array


class AttributionMethod:
    """Base class: construct the Captum object once, then `attribute(batch, ...)` per batch.

    A method declares what it needs and what it returns in class attributes; the engine and the
    registry read them and never test a method's name. A method may set one per instance in its
    constructor when it follows an option (`attention` has a delta when its compared method has).

    Attributes:
        name: config name (set by `@register`).
        needs_eager_attention: the model must return attention weights, so the replica is loaded
            with eager attention (SDPA kernels return none). Read from the class, before the
            model is loaded (`registry.attn_implementation`). Default False.
        uses_steps: the method integrates along a path from the baseline: `attribute` gets the
            step count (`attribution.n_steps`, doubled by adaptive refinement up to `max_steps`),
            rows report it in `n_steps`, and `attribution.integration_method` applies. Without
            it `attribute` gets `n_steps=0`, rows report 0 and are never refined. Default False.
        has_delta: `attribute` returns a convergence delta per row: rows report `delta` and
            `delta_rel`, and adaptive refinement re-runs rows whose `delta_rel` exceeds
            `attribution.delta_tolerance`. Without it both columns are NaN. Default False.
        extras: name -> kind of every extra `attribute` may return (`extra_<name>` columns):
            `PER_ROW` (`[batch]`, windows averaged), `PER_TOKEN` (`[batch, seq_len]`) or
            `PER_LAYER_TOKEN` (`[batch, layers, seq_len]`; windows stitched along `seq_len`).
            An extra that is not declared, or has another shape, is an error. Default none.

    Options of its own (`attribution.compare_method`, `attribution.integration_method`, ...) a
    method reads in `from_config`, from the config's `attribution` section.
    """

    name = "base"
    needs_eager_attention = False
    uses_steps = False
    has_delta = False
    extras: Mapping[str, str] = MappingProxyType({})

    def __init__(self, forward: ModelForward):
        self.forward = forward
        self.loaded = forward.loaded

    @classmethod
    def from_config(cls, forward: ModelForward, attribution) -> AttributionMethod:
        """Build from the `attribution` config section; methods with options override this."""
        return cls(forward)

    def evals_per_row(self, n_steps: int) -> int:
        """Forward+backward evaluations one row costs (sizes the token budget chunks)."""
        return max(n_steps, 1) if self.uses_steps else 1

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        """Scores for `batch`.

        Args:
            batch: a padded micro-batch.
            n_steps: integration steps (0 unless `uses_steps`).
            internal_batch_size: examples per forward+backward chunk the token budget allows
                (Captum's `internal_batch_size`; `evals_per_row` sizes it).

        Returns:
            `token_attr` `[batch, seq_len]`; `delta` `[batch]` exactly when `has_delta`; the
            declared `extras`.
        """
        raise NotImplementedError

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings of `ids`, `[batch, seq_len]` -> `[batch, seq_len, hidden]`."""
        return self.loaded.word_embeddings(ids)


class PathMethod(AttributionMethod):
    """An integrating Captum method (IG, LIG, LayerConductance): steps, a delta, and
    `attribution.integration_method` as its own option."""

    uses_steps = True
    has_delta = True

    def __init__(self, forward: ModelForward, integration_method: str = "gausslegendre"):
        super().__init__(forward)
        self.integration_method = integration_method

    @classmethod
    def from_config(cls, forward: ModelForward, attribution) -> AttributionMethod:
        return cls(forward, attribution.integration_method)

    def integrate(
        self, captum_method, inputs, baselines, batch: Batch, n_steps: int, internal_batch_size: int
    ):
        """Call `captum_method.attribute` the way every method here does: per-row targets, the
        attention mask as extra forward argument, the delta returned.

        Returns:
            `(attributions, delta)` as Captum gives them.
        """
        return captum_method.attribute(
            inputs=inputs,
            baselines=baselines,
            target=batch.targets,
            additional_forward_args=(batch.attention_mask,),
            n_steps=n_steps,
            method=self.integration_method,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )


def hidden_sum(attr: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sum over the hidden axis, `[batch, seq_len, hidden]` -> `[batch, seq_len]`, pads set to 0."""
    return attr.float().sum(dim=-1) * attention_mask.to(torch.float32)
