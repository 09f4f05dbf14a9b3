"""The batched attribution engine: tokenized rows in, one `RowResult` per (row, target) out.

Rows are cut into segments (truncation or windows), predicted once, then attributed in
micro-batches of similar length under a token budget: sorted by length, right-padded with an
attention mask, run through the registered method, and scattered back in input order. Errors stay
per row, in prediction and attribution alike: out-of-memory halves the budget and retries, any
other failure isolates the row, and a token id past the embedding makes an `invalid_token` row.

What the engine does for a method follows what the method declares (`AttributionMethod`):
steps and adaptive refinement only for `uses_steps`, deltas only for `has_delta`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from raysattr.attribution.assemble import ItemResult, RowParts, assemble, split_output
from raysattr.attribution.base import Batch, ModelForward
from raysattr.attribution.budget import ChunkPlan, is_out_of_memory, model_budget
from raysattr.attribution.predict import BatchPredictor, out_of_range_token, pad_batch
from raysattr.attribution.registry import attn_implementation, get_method, load_method_modules
from raysattr.attribution.results import RowResult
from raysattr.attribution.segments import Segment, make_segments
from raysattr.config import AttributionConfig, RunConfig, TokenizeConfig
from raysattr.models import LoadedModel, load_model
from raysattr.models.check import baseline_token_id, check_outputs, check_specials
from raysattr.tokenize import TokenizedRow

MAX_PADDING = 0.1  # share of padded token positions a micro-batch may hold


@dataclass
class _Item:
    """One segment attributed for one target class."""

    segment: int
    target: int


@dataclass
class _Work:
    """One `run()` call, shared by its steps.

    Attributes:
        rows: the input rows.
        results: row -> its results; error rows get theirs as soon as they fail.
        segments: every segment of the rows that can be attributed.
        seg_rows: row -> indices of its segments.
        truncated: row -> whether it was cut at the model's limit.
        probs: `[n_segments, n_classes]` probabilities.
        items: what is attributed, (segment, target) pairs.
        done: item -> its latest result.
        fp32: items recomputed in fp32 by the bf16 guard.
    """

    rows: Sequence[TokenizedRow]
    results: dict[int, list[RowResult]] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    seg_rows: dict[int, list[int]] = field(default_factory=dict)
    truncated: dict[int, bool] = field(default_factory=dict)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    items: list[_Item] = field(default_factory=list)
    done: dict[int, ItemResult] = field(default_factory=dict)
    fp32: set[int] = field(default_factory=set)

    def seq_len(self, item: int) -> int:
        return self.segments[self.items[item].segment].seq_len

    def fail(self, item_ids: list[int], code: str, message: str) -> None:
        for i in item_ids:
            row = self.segments[self.items[i].segment].row
            self.results[row] = [RowResult(row, code, message)]


@dataclass
class _Round:
    """One pass over some items at one step count."""

    n_steps: int
    pending: deque[int]
    finished: list[int] = field(default_factory=list)


class AttributionEngine:
    """Runs one attribution method over lists of tokenized rows on one model replica.

    Args:
        loaded: the model replica.
        attribution: the config's `attribution` section: the method (built by its
            `from_config`, which reads the method's own options), `target`, `output`,
            `baseline`, `n_steps`, `adaptive_steps` / `max_steps` / `delta_tolerance`,
            `token_budget`, `max_batch_rows`; `method_modules` are imported first.
        tokenize: the `tokenize` section; only `max_length`, `long_policy` and
            `window_stride` are read. None = their defaults.
        dtype: compute dtype (`model.dtype`): "float32" or "bfloat16" (autocast).
        fault_hook: called as `fault_hook(n_rows, seq_len)` before each micro-batch; tests raise
            `torch.OutOfMemoryError` from it to exercise the back-off.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        attribution: AttributionConfig,
        tokenize: TokenizeConfig | None = None,
        dtype: str = "float32",
        fault_hook: Callable[[int, int], None] | None = None,
    ):
        self.attribution, self.tokenize = attribution, tokenize or TokenizeConfig()
        self.loaded, self.dtype, self.fault_hook = loaded, dtype, fault_hook
        # The driver's checks, again: an engine built elsewhere (an actor, faithfulness) must
        # not attribute a regression head through a softmax or frame rows with missing tokens.
        where = f"model.path={loaded.source!r}"
        check_outputs(loaded.num_labels, attribution.output, where)
        check_specials(loaded.special_ids(), attribution.baseline, where)
        for p in loaded.model.parameters():
            p.requires_grad_(False)  # gradients are taken w.r.t. inputs/layers, never weights
        self.forward = ModelForward(loaded, attribution.output, dtype)
        load_method_modules(attribution.method_modules)
        self.method = get_method(attribution.method).from_config(self.forward, attribution)
        self.n_steps = attribution.n_steps if self.method.uses_steps else 0
        self.special = loaded.special_ids()
        self.max_tokens = min(
            self.tokenize.max_length or loaded.max_content_tokens, loaded.max_content_tokens
        )
        self.budget = model_budget(loaded.device, loaded.model.config, attribution.token_budget)
        self.baseline_id = baseline_token_id(self.special, attribution.baseline)
        self.embedding_rows = loaded.word_embeddings.num_embeddings
        self.predictor = BatchPredictor(
            self.forward,
            self.budget,
            self.special["pad"],
            attribution.max_batch_rows,
            loaded.device,
        )
        self.model_evals = 0  # forward+backward example evaluations, for benchmarks
        self.forward_evals = 0  # forward-only example evaluations (the path rule's sweeps)
        self.fp32_recomputes = 0  # items the bf16 guard attributed again in fp32
        # Token positions in attributed micro-batches (rows x padded length) and how many of
        # them were padding: the pipeline's `padding_fraction` (README "Length routing").
        self.tokens_evaluated = 0
        self.tokens_padding = 0

    @classmethod
    def from_config(
        cls,
        loaded: LoadedModel,
        cfg: RunConfig,
        fault_hook: Callable[[int, int], None] | None = None,
    ) -> AttributionEngine:
        """The engine a run's config describes (`attribution`, `tokenize`, `model.dtype`)."""
        return cls(loaded, cfg.attribution, cfg.tokenize, cfg.model.dtype, fault_hook)

    @classmethod
    def load(cls, cfg: RunConfig, device: str | torch.device) -> AttributionEngine:
        """A fresh model replica on `device`, loaded as the run's method needs (eager attention
        when it reads attention weights; `attribution.method_modules` imported first), and its
        engine."""
        load_method_modules(cfg.attribution.method_modules)
        attn = attn_implementation(cfg.attribution.method)
        return cls.from_config(load_model(cfg.model, device, attn), cfg)

    # ----------------------------------------------------------------------------- public
    def run(
        self, rows: Sequence[TokenizedRow], labels: Sequence[int | None] | None = None
    ) -> list[RowResult]:
        """Attribute `rows`; returns one result per (row, target) in input order.

        Args:
            rows: tokenized rows; error rows pass through as error results.
            labels: true class per row (needed when `target` is "label").
        """
        work = _Work(rows)
        self._segment(work)
        self._predict(work)
        self._items(work, labels)
        self._attribute_all(work)
        self._assemble_all(work)
        return [r for i in range(len(rows)) for r in work.results.get(i, [])]

    # ------------------------------------------------------------------------ preparation
    def _segment(self, work: _Work) -> None:
        for i, row in enumerate(work.rows):
            if not row.ok:
                work.results[i] = [RowResult(i, row.error_code, row.error, n_unknown=row.n_unknown)]
                continue
            bad_token = out_of_range_token(row.content_ids, self.embedding_rows)
            if bad_token is not None:
                work.results[i] = [
                    RowResult(i, "invalid_token", bad_token, n_unknown=row.n_unknown)
                ]
                continue
            try:
                segs, work.truncated[i] = make_segments(
                    i,
                    row,
                    self.special["cls"],
                    self.special["sep"],
                    self.max_tokens,
                    self.tokenize.long_policy,
                    self.tokenize.window_stride,
                )
            except ValueError as exc:
                work.results[i] = [RowResult(i, "too_long", str(exc), n_unknown=row.n_unknown)]
                continue
            work.seg_rows[i] = list(range(len(work.segments), len(work.segments) + len(segs)))
            work.segments.extend(segs)

    def _predict(self, work: _Work) -> None:
        """Softmax probabilities per segment, `[n_segments, n_classes]`; a row with a segment
        that cannot be predicted becomes an error result (its probabilities stay NaN)."""
        prediction = self.predictor([s.ids for s in work.segments], self.loaded.num_labels)
        for seg, (code, message) in prediction.failures.items():
            row = work.segments[seg].row
            work.results[row] = [RowResult(row, code, message)]
        work.probs = prediction.probs

    def _items(self, work: _Work, labels) -> None:
        for row, seg_ids in work.seg_rows.items():
            if row in work.results:  # its prediction failed
                continue
            row_probs = work.probs[seg_ids].mean(axis=0)
            try:
                targets = self._targets(row_probs, None if labels is None else labels[row])
            except ValueError as exc:
                work.results[row] = [
                    RowResult(
                        row,
                        "invalid_target",
                        str(exc),
                        pred=int(row_probs.argmax()),
                        probs=row_probs,
                        n_unknown=work.rows[row].n_unknown,
                    )
                ]
                continue
            work.items.extend(_Item(seg, t) for t in targets for seg in seg_ids)

    def _targets(self, row_probs: np.ndarray, label) -> list[int]:
        n_classes = len(row_probs)
        target = self.attribution.target
        if target == "predicted":
            return [int(row_probs.argmax())]
        if target == "all":
            return list(range(n_classes))
        if target == "label":
            if label is None or (isinstance(label, float) and math.isnan(label)):
                raise ValueError("target='label' but the row has no label")
            chosen = int(label)
        else:
            chosen = int(target.split(":")[1])
        if not 0 <= chosen < n_classes:
            raise ValueError(f"target class {chosen} is outside 0..{n_classes - 1}")
        return [chosen]

    # ------------------------------------------------------------------------ attribution
    def _attribute_all(self, work: _Work) -> None:
        """Run every item; for a method with steps and a delta, adaptive refinement re-runs the
        items over tolerance at 2x, 4x ... `max_steps`."""
        a = self.attribution
        refine = a.adaptive_steps and a.quadrature == "fixed"
        refine = refine and self.method.uses_steps and self.method.has_delta
        n_steps = self.n_steps
        todo = self._run_round(work, list(range(len(work.items))), n_steps)
        while refine and todo and n_steps < a.max_steps:
            n_steps = min(n_steps * 2, a.max_steps)
            todo = self._run_round(work, todo, n_steps)
        if todo and self.forward.autocast and self.method.has_delta:
            self._recompute_fp32(work, todo, n_steps)

    def _recompute_fp32(self, work: _Work, todo: list[int], n_steps: int) -> None:
        """The bf16 guard: items still over tolerance under bf16 autocast are attributed again
        in fp32 (bf16 gradients alone leave a delta of several percent; measured in NOTES)."""
        self.forward.autocast = False
        try:
            self._run_round(work, todo, n_steps)
        finally:
            self.forward.autocast = True
        work.fp32.update(todo)
        self.fp32_recomputes += len(todo)

    def _run_round(self, work: _Work, todo: list[int], n_steps: int) -> list[int]:
        """Attribute items `todo` in length-sorted micro-batches under the token budget.

        Returns:
            the items whose `delta_rel` is still over `attribution.delta_tolerance`.
        """
        rnd = _Round(n_steps, deque(sorted(todo, key=work.seq_len)))
        evals = self.method.evals_per_row(n_steps)
        max_rows = self.attribution.max_batch_rows
        while rnd.pending:
            take = [rnd.pending.popleft()]
            plan = self.budget.plan(work.seq_len(take[0]), evals, max_rows)
            real = work.seq_len(take[0])
            while rnd.pending:
                longest = work.seq_len(rnd.pending[0])
                nxt = self.budget.plan(longest, evals, max_rows)
                # Sorted by length, so the newcomer sets the padded length of all.
                waste = 1 - (real + longest) / ((len(take) + 1) * longest)
                if len(take) + 1 > nxt.rows or waste > MAX_PADDING:
                    break
                real += longest
                take.append(rnd.pending.popleft())
                plan = nxt
            self._run_micro_batch(work, rnd, take, plan)
        tol = self.attribution.delta_tolerance
        return [i for i in rnd.finished if work.done[i].delta_rel > tol]

    def _run_micro_batch(self, work: _Work, rnd: _Round, take: list[int], plan: ChunkPlan):
        batch = self._batch(work, take)
        try:
            if self.fault_hook is not None:
                self.fault_hook(batch.size, batch.seq_len)
            out = self.method.attribute(batch, rnd.n_steps, plan.internal_batch_size)
        except Exception as exc:  # noqa: BLE001 - every failure must end as a row, not a crash
            self._recover(work, rnd, take, plan, batch, exc)
            return
        self.budget.on_success()
        fixed_cost = batch.size * self.method.evals_per_row(rnd.n_steps)
        self.model_evals += fixed_cost if out.grad_evals is None else out.grad_evals
        self.forward_evals += out.forward_evals
        lengths = batch.attention_mask.sum(dim=1).tolist()
        self.tokens_evaluated += batch.size * batch.seq_len
        self.tokens_padding += batch.size * batch.seq_len - sum(lengths)
        n_residues = [len(r) for r in batch.residues]  # residue-level output (ism)
        parts = split_output(out, lengths, self.method, rnd.n_steps, n_residues)
        work.done.update(zip(take, parts, strict=True))
        rnd.finished.extend(take)

    def _recover(self, work, rnd: _Round, take, plan: ChunkPlan, batch: Batch, exc) -> None:
        if is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if self.budget.on_oom(plan, batch.seq_len):
                rnd.pending.extendleft(reversed(take))
                return
            message = (
                f"out of memory even for one row of {batch.seq_len} tokens in chunks of "
                f"one example; use a larger device or tokenize.long_policy=window"
            )
            work.fail(take, "oom", message)
            return
        if len(take) > 1:  # isolate the row that fails
            for i in take:
                single = ChunkPlan(1, max(1, plan.internal_batch_size // len(take)))
                self._run_micro_batch(work, rnd, [i], single)
            return
        work.fail(take, "attribution_failed", f"{type(exc).__name__}: {exc}")

    def _batch(self, work: _Work, take: list[int]) -> Batch:
        items = [work.items[i] for i in take]
        ids, mask = pad_batch(
            [work.segments[it.segment].ids for it in items], self.special["pad"], self.loaded.device
        )
        baseline = ids.clone()
        content = mask.bool().clone()
        content[:, 0] = False
        content[torch.arange(len(ids)), mask.sum(dim=1) - 1] = False  # [SEP]
        baseline[content] = self.baseline_id
        targets = torch.tensor([it.target for it in items], device=self.loaded.device)
        residues, spans = _segment_residues(work, [it.segment for it in items])
        return Batch(ids, baseline, mask, targets, residues, spans)

    # ------------------------------------------------------------------------- assembly
    def _assemble_all(self, work: _Work) -> None:
        """One result per (row, target) whose every segment was attributed."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, it in enumerate(work.items):
            groups.setdefault((work.segments[it.segment].row, it.target), []).append(i)
        failed = set(work.results)
        for (row, target), item_ids in groups.items():
            if row in failed:
                continue
            if any(i not in work.done for i in item_ids):
                result = RowResult(row, "attribution_failed", "a window failed")
            else:
                seg_ids = [work.items[i].segment for i in item_ids]
                parts = RowParts(
                    row,
                    work.rows[row],
                    target,
                    [work.segments[s] for s in seg_ids],
                    [work.done[i] for i in item_ids],
                    work.probs[seg_ids],
                    work.truncated[row],
                )
                sp = self.special
                result = assemble(parts, sp["cls"], sp["sep"], self.method.extras)
                self._mark(result, [i in work.fp32 for i in item_ids])
            work.results.setdefault(row, []).append(result)

    def _mark(self, result: RowResult, recomputed: list[bool]) -> None:
        """`converged` (delta_rel within `delta_tolerance`, for methods with a delta) and
        `fp32_recomputed` (any window redone by the bf16 guard)."""
        if self.method.has_delta:
            result.converged = bool(result.delta_rel <= self.attribution.delta_tolerance)
        result.fp32_recomputed = any(recomputed)


def _segment_residues(work: _Work, seg_ids: list[int]) -> tuple[list[str], list[np.ndarray]]:
    """The residues each segment's content tokens cover and their spans relative to the first
    one, for methods that work on residues (`Batch.residues`, `Batch.spans`)."""
    residues, spans = [], []
    for s in seg_ids:
        seg = work.segments[s]
        start, end = (int(seg.spans[0, 0]), int(seg.spans[-1, 1])) if len(seg.spans) else (0, 0)
        residues.append(work.rows[seg.row].residues[start:end])
        spans.append(seg.spans - start)
    return residues, spans
