"""From a method's output to `RowResult`s: a micro-batch cut into one result per item (segment,
target), checked against what the method declares (`has_delta`, `extras`), and the items of one
(row, target) — its windows — stitched into the row's result."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from raysattr.attribution.base import (
    EXTRA_KINDS,
    PER_RESIDUE_LETTER,
    PER_ROW,
    AttributionMethod,
    MethodOutput,
)
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
        residue_attr: `[n_residues]` scores of the segment's residues when the method scores
            residues itself, else None.
    """

    token_attr: np.ndarray
    delta: float
    gap: float
    extras: dict
    n_steps: int
    residue_attr: np.ndarray | None = None

    @property
    def delta_rel(self) -> float:
        return relative(self.delta, self.gap)


def relative(delta: float, gap: float) -> float:
    """|delta| / |F(x) - F(x')| (the gap floored at `GAP_FLOOR`); NaN without a delta."""
    if math.isnan(delta):
        return float("nan")
    return abs(delta) / max(abs(gap), GAP_FLOOR)


def split_output(
    out: MethodOutput,
    lengths: list[int],
    method: AttributionMethod,
    n_steps: int,
    n_residues: list[int] | None = None,
) -> list[ItemResult]:
    """Cut a micro-batch's output into one `ItemResult` per row.

    Args:
        out: what `method.attribute` returned for the batch.
        lengths: real tokens per row of the batch (padding is cut off).
        method: the method, whose `has_delta` and `extras` the output must match.
        n_steps: the steps the batch was attributed with (`out.n_steps` overrides it per row).
        n_residues: residues per row (`Batch.residues`), to cut residue-level output; needed
            only by methods with residue scores or `PER_RESIDUE_LETTER` extras.

    Raises:
        ValueError: the output breaks the method's declared contract (a bug in the method).
    """
    out.extras = {k: _to_numpy(v) for k, v in out.extras.items()}
    _check_output(out, len(lengths), method)
    attr = out.token_attr.detach().float().cpu().numpy()
    delta = np.full(len(lengths), np.nan)
    if method.has_delta:
        delta = out.delta.detach().float().cpu().numpy()
    residue_attr = None if out.residue_attr is None else _to_numpy(out.residue_attr)
    parts = []
    for j, n in enumerate(lengths):
        n_res = n_residues[j] if n_residues is not None else 0
        extras = {k: _row_extra(v, j, n, n_res, method.extras[k]) for k, v in out.extras.items()}
        token_attr = attr[j, :n]
        gap = float(token_attr.sum() - delta[j])
        own = None if residue_attr is None else residue_attr[j, :n_res]
        steps = n_steps if out.n_steps is None else int(out.n_steps[j])
        parts.append(ItemResult(token_attr, float(delta[j]), gap, extras, steps, own))
    return parts


def _row_extra(value: np.ndarray, j: int, n_tokens: int, n_res: int, kind: str) -> np.ndarray:
    """Row `j` of a batch extra, padding cut: tokens along the last axis, residues the first."""
    if kind == PER_ROW:
        return value[j]
    if kind == PER_RESIDUE_LETTER:
        return value[j, :n_res]
    return value[j, ..., :n_tokens]


def _to_numpy(value) -> np.ndarray:
    """Extras as numpy (a method may hand back tensors, on any device)."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def _check_output(out: MethodOutput, size: int, method: AttributionMethod) -> None:
    who = f"attribution method {method.name!r}"
    if method.has_delta and out.delta is None:
        raise ValueError(f"{who} declares has_delta but returned no delta")
    if method.scores_residues and out.residue_attr is None:
        raise ValueError(f"{who} declares scores_residues but returned no residue_attr")
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
    if p.parts[0].residue_attr is not None:  # the method scored residues itself
        residue_attr = stitch_residues([x.residue_attr for x in p.parts], p.segments, covered)
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
        extras=_stitch_extras(p, offsets, n_content, kinds, covered),
    )


def _stitch_extras(
    p: RowParts, offsets: list[int], n_content: int, kinds: Mapping[str, str], covered: int
) -> dict:
    extras = {}
    for key in p.parts[0].extras:
        values = [x.extras[key] for x in p.parts]
        if kinds[key] == PER_ROW:
            extras[key] = float(np.mean(values))
        elif kinds[key] == PER_RESIDUE_LETTER:
            extras[key] = stitch_residues(values, p.segments, covered)
        else:
            extras[key] = stitch_tokens(values, offsets, n_content)
    return extras


def stitch_residues(pieces: list[np.ndarray], segments: list[Segment], covered: int) -> np.ndarray:
    """Residue-level arrays of a row's segments, averaged where windows overlap.

    Args:
        pieces: `[n_residues_w, ...]` per segment, residue 0 being the segment's first residue.
        segments: the row's segments (their spans place each piece in the row).
        covered: residues of the row that its segments cover.

    Returns:
        `[covered, ...]` float32.
    """
    sums = np.zeros((covered, *pieces[0].shape[1:]), np.float64)
    counts = np.zeros(covered, np.float64)
    for piece, seg in zip(pieces, segments, strict=True):
        start = int(seg.spans[0, 0])
        sums[start : start + len(piece)] += piece
        counts[start : start + len(piece)] += 1
    shape = (covered,) + (1,) * (sums.ndim - 1)
    return (sums / np.maximum(counts, 1).reshape(shape)).astype(np.float32)
