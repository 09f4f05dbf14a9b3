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

from raysattr.attribution import quadrature
from raysattr.attribution.quadrature import INITIAL_PANELS, PathResult, PathSettings, PathSpace
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
        residues: per row, the residues its content tokens cover (the segment's part of the
            normalised sequence), for methods that work on residues (`ism`); None when the
            batch was built without them.
        spans: per row, `[n_tokens, 2]` residue ranges of its content tokens, relative to the
            first residue of `residues`; None with `residues`.
    """

    input_ids: torch.Tensor
    baseline_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    residues: list[str] | None = None
    spans: list[np.ndarray] | None = None

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
            more than one, is `seq_len` (e.g. `[batch, layers, seq_len]`); scalars are `[batch]`;
            `PER_RESIDUE_LETTER` extras are `[batch, max_residues, letters]`.
        residue_attr: `[batch, max_residues]` scores per residue of each row's `Batch.residues`
            (zero past a row's end), from a method that scores residues itself
            (`AttributionMethod.scores_residues`); the row's `residue_attr` is then these, not
            the token scores spread over residues. None otherwise.
        n_steps: `[batch]` gradient nodes each row used, when they differ per row (the path
            rule); None = the `n_steps` the batch was called with.
        grad_evals: forward+backward example evaluations spent, when the method counts them
            (None = `batch x evals_per_row(n_steps)`); forward_evals: forward-only ones.
    """

    token_attr: torch.Tensor
    delta: torch.Tensor | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    residue_attr: np.ndarray | None = None
    n_steps: np.ndarray | None = None
    grad_evals: int | None = None
    forward_evals: int = 0


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
# averaging windows: one value per row, one per token, one per encoder layer and token, or one
# per residue and alphabet letter (ISM's hypothetical scores; windows stitched along residues).
PER_ROW, PER_TOKEN, PER_LAYER_TOKEN = "row", "token", "layer_token"
PER_RESIDUE_LETTER = "residue_letter"
# kind -> ndim of the batch array
EXTRA_KINDS = {PER_ROW: 1, PER_TOKEN: 2, PER_LAYER_TOKEN: 3, PER_RESIDUE_LETTER: 3}


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
        uses_steps: the method integrates along a path from the baseline (`PathMethod`):
            `attribute` gets the step count of the fixed rule (`attribution.n_steps`, doubled by
            adaptive refinement up to `max_steps`) or places its own nodes (the path rule); rows
            report the nodes in `n_steps`. Without it `attribute` gets `n_steps=0`, rows report
            0 and are never refined. Default False.
        has_delta: `attribute` returns a convergence delta per row: rows report `delta` and
            `delta_rel`, and adaptive refinement re-runs rows whose `delta_rel` exceeds
            `attribution.delta_tolerance`. Without it both columns are NaN. Default False.
        extras: name -> kind of every extra `attribute` may return (`extra_<name>` columns):
            `PER_ROW` (`[batch]`, windows averaged), `PER_TOKEN` (`[batch, seq_len]`) or
            `PER_LAYER_TOKEN` (`[batch, layers, seq_len]`; windows stitched along `seq_len`)
            or `PER_RESIDUE_LETTER` (`[batch, max_residues, letters]`, per residue of
            `Batch.residues`; windows stitched along residues). An extra that is not declared,
            or has another shape, is an error. Default none.
        scores_residues: `attribute` returns `MethodOutput.residue_attr`, scores per residue
            computed by the method itself (`ism` mutates residues), which become the rows'
            `residue_attr`. Default False.
        schemes: the `tokenize.scheme`s the method works with (pre-flight refuses others);
            None = every scheme. Default None.

    Options of its own (`attribution.compare_method`, `attribution.integration_method`, ...) a
    method reads in `from_config`, from the config's `attribution` section.
    """

    name = "base"
    needs_eager_attention = False
    uses_steps = False
    has_delta = False
    scores_residues = False
    schemes: tuple[str, ...] | None = None
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
    """An integrating method (IG, LIG, LayerConductance): a delta, and a quadrature of the
    straight path from the baseline.

    `attribution.quadrature=path` (the default in configs) places each row's gradient nodes
    where F changes and refines until `delta_tolerance` or `max_evals`
    (`raysattr.attribution.quadrature`); rows report the nodes they used in `n_steps`.
    `quadrature=fixed` is Captum's rule, `integration_method` with `n_steps` nodes for every
    row. A subclass implements `path_space` (the path for the path rule) and `attribute_fixed`
    (the Captum call); a constructed method without `path` settings uses the fixed rule.
    """

    uses_steps = True
    has_delta = True

    def __init__(
        self,
        forward: ModelForward,
        integration_method: str = "gausslegendre",
        path: PathSettings | None = None,
    ):
        super().__init__(forward)
        self.integration_method = integration_method
        self.path = path

    @classmethod
    def from_config(cls, forward: ModelForward, attribution) -> AttributionMethod:
        return cls(forward, attribution.integration_method, path_settings(attribution))

    def evals_per_row(self, n_steps: int) -> int:
        # The path rule starts with 2 * INITIAL_PANELS + 1 nodes; refinement adds few rows.
        return 2 * INITIAL_PANELS + 1 if self.path is not None else max(n_steps, 1)

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        if self.path is None:
            return self.attribute_fixed(batch, n_steps, internal_batch_size)
        result = quadrature.integrate(self.path_space(batch), self.path, internal_batch_size)
        return self.path_output(batch, result)

    def attribute_fixed(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        """The Captum call with `n_steps` nodes of `integration_method` for every row."""
        raise NotImplementedError

    def path_space(self, batch: Batch) -> PathSpace:
        """The batch's straight path in the space the method integrates in."""
        raise NotImplementedError

    def path_output(self, batch: Batch, result: PathResult) -> MethodOutput:
        """`token_attr` = the parts summed; subclasses add extras."""
        return MethodOutput(
            result.parts.sum(dim=1),
            result.delta,
            n_steps=result.nodes,
            grad_evals=result.grad_evals,
            forward_evals=result.forward_evals,
        )

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


def path_settings(attribution) -> PathSettings | None:
    """The path rule's settings from the `attribution` section; None under `quadrature=fixed`."""
    if attribution.quadrature != "path":
        return None
    return PathSettings(attribution.delta_tolerance, attribution.max_evals)


def pick_target(out: torch.Tensor, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
    """`[n, n_classes]` -> `[n]` each row's target column (`rows` index the batch)."""
    return out.gather(1, batch.targets[rows].view(-1, 1)).squeeze(1)


def hidden_sum(attr: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sum over the hidden axis, `[batch, seq_len, hidden]` -> `[batch, seq_len]`, pads set to 0."""
    return attr.float().sum(dim=-1) * attention_mask.to(torch.float32)
