"""Segments: what one model call sees of a row — the whole sequence, its truncated head, or one
of several overlapping windows — and how window scores are stitched back together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysattr.tokenize import TokenizedRow


@dataclass
class Segment:
    """`[CLS] + content[offset:offset+n] + [SEP]` of row `row`.

    Attributes:
        row: index of the row in the engine input.
        ids: `[n + 2]` int64 token ids with specials.
        spans: `[n, 2]` residue spans of the content tokens.
        offset: index of the first content token within the row's content tokens.
    """

    row: int
    ids: np.ndarray
    spans: np.ndarray
    offset: int

    @property
    def seq_len(self) -> int:
        return len(self.ids)


def window_starts(n_tokens: int, window: int, stride: int) -> list[int]:
    """Starts of windows of `window` tokens, at most `stride` apart, the first at 0 and the last
    ending at `n_tokens`, spread evenly so every overlap is about the same size."""
    if n_tokens <= window:
        return [0]
    count = -(-(n_tokens - window) // stride) + 1
    return np.linspace(0, n_tokens - window, count).round().astype(int).tolist()


def make_segments(
    row_index: int,
    row: TokenizedRow,
    cls_id: int,
    sep_id: int,
    max_tokens: int,
    policy: str,
    stride: int | None,
) -> tuple[list[Segment], bool]:
    """Cut a tokenized row into segments under `max_tokens` content tokens.

    Returns:
        `(segments, truncated)`.

    Raises:
        ValueError: the row is too long and `policy` is "error".
    """
    n = row.n_tokens
    if n <= max_tokens:
        starts, width, truncated = [0], n, False
    elif policy == "truncate":
        starts, width, truncated = [0], max_tokens, True
    elif policy == "window":
        stride = stride or max(1, max_tokens // 2)
        starts, width, truncated = window_starts(n, max_tokens, stride), max_tokens, False
    else:
        raise ValueError(
            f"{n} tokens exceed the model's limit of {max_tokens} (tokenize.long_policy='error')"
        )
    segments = []
    for start in starts:
        content = row.content_ids[start : start + width]
        ids = np.concatenate([[cls_id], content, [sep_id]]).astype(np.int64)
        segments.append(Segment(row_index, ids, row.spans[start : start + width], start))
    return segments, truncated


def stitch_tokens(pieces: list[np.ndarray], offsets: list[int], n_content: int) -> np.ndarray:
    """Average per-token arrays of overlapping segments along their last axis.

    Args:
        pieces: arrays `[..., n_w + 2]` (with the `[CLS]`/`[SEP]` positions first and last).
        offsets: content offset of each piece.
        n_content: content tokens of the whole row.

    Returns:
        `[..., n_content + 2]`; specials are the mean over pieces, content tokens the mean over
        the pieces that hold them.
    """
    if len(pieces) == 1 and pieces[0].shape[-1] == n_content + 2:
        return pieces[0]
    lead = pieces[0].shape[:-1]
    sums = np.zeros((*lead, n_content), np.float64)
    counts = np.zeros(n_content, np.float64)
    for piece, offset in zip(pieces, offsets, strict=True):
        width = piece.shape[-1] - 2
        sums[..., offset : offset + width] += piece[..., 1:-1]
        counts[offset : offset + width] += 1
    content = sums / np.maximum(counts, 1)
    first = np.mean([p[..., :1] for p in pieces], axis=0)
    last = np.mean([p[..., -1:] for p in pieces], axis=0)
    return np.concatenate([first, content, last], axis=-1).astype(np.float32)
