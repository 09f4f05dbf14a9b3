"""From a method's output to `RowResult`s: a micro-batch cut into one result per item (segment,
target), checked against what the method declares (`has_delta`, `extras`), and the items of one
(row, target) — its windows — stitched into the row's result."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from raysattr.attribution.base import EXTRA_KINDS, PER_ROW, AttributionMethod, MethodOutput
from raysattr.attribution.results import RowResult
from raysattr.attribution.segments import Segment, stitch_tokens
from raysattr.tokenize import TokenizedRow, residue_sums

GAP_FLOOR = 1e-4  # |F(x) - F(x')| below this is treated as this when judging deltas


@dataclass
class ItemResult:
    """One segment attributed for one target.

    Attributes:
        token_attr: `[seq_len]` scores (specials included, no padding).
        delta: convergence delta, NaN when the method has none.
        gap: F(x) - F(x') = sum(token_attr) - delta.
        extras: the method's extras for this segment (padding cut off).
        n_steps: integration steps used (0 for methods without steps).
    """

    token_attr: np.ndarray
    delta: float
    gap: float
    extras: dict
    n_steps: int

    @property
    def delta_rel(self) -> float:
        return relative(self.delta, self.gap)


def relative(delta: float, gap: float) -> float:
    """|delta| / |F(x) - F(x')| (the gap floored at `GAP_FLOOR`); NaN without a delta."""
    if math.isnan(delta):
        return float("nan")
    return abs(delta) / max(abs(gap), GAP_FLOOR)


def split_output(
    out: MethodOutput, lengths: list[int], method: AttributionMethod, n_steps: int
) -> list[ItemResult]:
    """Cut a micro-batch's output into one `ItemResult` per row.

    Args:
        out: what `method.attribute` returned for the batch.
        lengths: real tokens per row of the batch (padding is cut off).
        method: the method, whose `has_delta` and `extras` the output must match.
        n_steps: the steps the batch was attributed with.

    Raises:
        ValueError: the output breaks the method's declared contract (a bug in the method).
    """
    out.extras = {k: _to_numpy(v) for k, v in out.extras.items()}
    _check_output(out, len(lengths), method)
    attr = out.token_attr.detach().float().cpu().numpy()
    delta = np.full(len(lengths), np.nan)
    if method.has_delta:
        delta = out.delta.detach().float().cpu().numpy()
    parts = []
    for j, n in enumerate(lengths):
        extras = {
            k: (v[j] if method.extras[k] == PER_ROW else v[j, ..., :n])
            for k, v in out.extras.items()
        }
        token_attr = attr[j, :n]
        gap = float(token_attr.sum() - delta[j])
        parts.append(ItemResult(token_attr, float(delta[j]), gap, extras, n_steps))
    return parts


def _to_numpy(value) -> np.ndarray:
    """Extras as numpy (a method may hand back tensors, on any device)."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def _check_output(out: MethodOutput, size: int, method: AttributionMethod) -> None:
    who = f"attribution method {method.name!r}"
    if method.has_delta and out.delta is None:
        raise ValueError(f"{who} declares has_delta but returned no delta")
    if tuple(out.token_attr.shape[:1]) != (size,) or out.token_attr.ndim != 2:
        raise ValueError(
            f"{who} returned token_attr of shape {tuple(out.token_attr.shape)}; "
            f"expected [{size}, seq_len]"
        )
    for key, value in out.extras.items():
        kind = method.extras.get(key)
        if kind is None:
            declared = ", ".join(method.extras) or "none"
            raise ValueError(
                f"{who} returned extra {key!r}, which it does not declare ({declared})"
            )
        if np.ndim(value) != EXTRA_KINDS[kind] or len(value) != size:
            raise ValueError(
                f"{who} returned extra {key!r} of shape {np.shape(value)}; declared {kind!r} "
                f"({EXTRA_KINDS[kind]} axes, the first of {size} rows)"
            )


@dataclass
class RowParts:
    """What one (row, target) result is made of.

    Attributes:
        index: the row's position in the engine input.
        row: the tokenized row.
        target: the class explained.
        segments: the row's segments (one, or several windows), in order.
        parts: one item result per segment.
        probs: `[n_segments, n_classes]` probabilities of those segments.
        truncated: the row was cut at the model's maximum length.
    """

    index: int
    row: TokenizedRow
    target: int
    segments: list[Segment]
    parts: list[ItemResult]
    probs: np.ndarray
    truncated: bool


def assemble(p: RowParts, cls_id: int, sep_id: int, kinds: Mapping[str, str]) -> RowResult:
    """Stitch a row's segments into its result: window scores averaged where they overlap,
    residue scores from token scores, probabilities averaged over windows.

    Args:
        p: the row's parts.
        cls_id, sep_id: special token ids framing the full sequence.
        kinds: the method's declared extras (name -> kind).
    """
    n_content = max(s.offset + s.seq_len - 2 for s in p.segments)
    offsets = [s.offset for s in p.segments]
    token_attr = stitch_tokens([x.token_attr for x in p.parts], offsets, n_content)
    covered = int(p.segments[-1].spans[-1, 1]) if p.truncated else p.row.length
    sums, counts = np.zeros(covered), np.zeros(covered)
    for seg, part in zip(p.segments, p.parts, strict=True):
        s_sum, s_cnt = residue_sums(part.token_attr[1:-1], seg.spans, covered)
        sums, counts = sums + s_sum, counts + s_cnt
    residue_attr = np.divide(sums, counts, out=np.zeros(covered), where=counts > 0)
    row_probs = p.probs.mean(axis=0)
    ids = np.concatenate([[cls_id], p.row.content_ids[:n_content], [sep_id]]).astype(np.int64)
    return RowResult(
        p.index,
        target=p.target,
        pred=int(row_probs.argmax()),
        probs=row_probs,
        token_ids=ids,
        token_attr=token_attr.astype(np.float32),
        residue_attr=residue_attr.astype(np.float32),
        delta=float(sum(x.delta for x in p.parts)),
        delta_rel=max(x.delta_rel for x in p.parts),
        n_steps=max(x.n_steps for x in p.parts),
        truncated=p.truncated,
        windows=len(p.segments),
        n_unknown=p.row.n_unknown,
        extras=_stitch_extras(p.parts, offsets, n_content, kinds),
    )


def _stitch_extras(
    parts: list[ItemResult], offsets: list[int], n_content: int, kinds: Mapping[str, str]
) -> dict:
    extras = {}
    for key in parts[0].extras:
        values = [x.extras[key] for x in parts]
        if kinds[key] == PER_ROW:
            extras[key] = float(np.mean(values))
        else:
            extras[key] = stitch_tokens(values, offsets, n_content)
    return extras
