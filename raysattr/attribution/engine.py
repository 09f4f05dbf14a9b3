"""The batched attribution engine: tokenized rows in, one `RowResult` per (row, target) out.

Rows are cut into segments (truncation or windows), predicted once, then attributed in
micro-batches of similar length under a token budget: sorted by length, right-padded with an
attention mask, run through the registered method, and scattered back in input order. Errors stay
per row, in prediction and attribution alike: out-of-memory halves the budget and retries, any
other failure isolates the row, and a token id past the embedding makes an `invalid_token` row.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from raysattr.attribution.base import Batch, ModelForward
from raysattr.attribution.budget import ChunkPlan, TokenBudget, initial_budget, is_out_of_memory
from raysattr.attribution.predict import BatchPredictor, out_of_range_token, pad_batch
from raysattr.attribution.registry import get_method
from raysattr.attribution.results import RowResult
from raysattr.attribution.segments import Segment, make_segments, stitch_tokens
from raysattr.models import LoadedModel
from raysattr.models.check import baseline_token_id, check_outputs, check_specials
from raysattr.tokenize import TokenizedRow, residue_sums

GAP_FLOOR = 1e-4  # |F(x) - F(x')| below this is treated as this when judging deltas


@dataclass
class EngineSettings:
    """What the engine needs from `AttributionConfig` + `TokenizeConfig` + `ModelConfig`."""

    method: str = "lig"
    target: str = "predicted"
    output: str = "prob"
    baseline: str = "pad"
    n_steps: int = 50
    integration_method: str = "gausslegendre"
    token_budget: int | None = None
    max_batch_rows: int = 64
    delta_tolerance: float = 0.05
    adaptive_steps: bool = False
    max_steps: int = 400
    compare_method: str = "lig"
    dtype: str = "float32"
    max_length: int | None = None
    long_policy: str = "truncate"
    window_stride: int | None = None

    @classmethod
    def from_config(cls, cfg) -> EngineSettings:
        """Collect the engine's fields from a `RunConfig`."""
        sources = {**vars(cfg.tokenize), **vars(cfg.attribution), "dtype": cfg.model.dtype}
        return cls(**{f.name: sources[f.name] for f in fields(cls) if f.name in sources})


@dataclass
class _Item:
    """One segment attributed for one target class."""

    segment: int
    target: int


@dataclass
class _ItemResult:
    token_attr: np.ndarray  # [seq_len]
    delta: float
    gap: float  # F(x) - F(x') = sum(attr) - delta
    extras: dict


class AttributionEngine:
    """Runs one attribution method over lists of tokenized rows on one model replica.

    Args:
        loaded: the model replica.
        settings: method, target, baseline, budget and long-sequence settings.
        fault_hook: called as `fault_hook(n_rows, seq_len)` before each micro-batch; tests raise
            `torch.OutOfMemoryError` from it to exercise the back-off.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        settings: EngineSettings,
        fault_hook: Callable[[int, int], None] | None = None,
    ):
        self.loaded, self.settings, self.fault_hook = loaded, settings, fault_hook
        # The driver's checks, again: an engine built elsewhere (an actor, faithfulness) must
        # not attribute a regression head through a softmax or frame rows with missing tokens.
        where = f"model.path={loaded.source!r}"
        check_outputs(loaded.num_labels, settings.output, where)
        check_specials(loaded.special_ids(), settings.baseline, where)
        for p in loaded.model.parameters():
            p.requires_grad_(False)  # gradients are taken w.r.t. inputs/layers, never weights
        self.forward = ModelForward(loaded, settings.output, settings.dtype)
        self.method = get_method(settings.method).from_settings(self.forward, settings)
        self.special = loaded.special_ids()
        self.max_tokens = min(
            settings.max_length or loaded.max_content_tokens, loaded.max_content_tokens
        )
        config = loaded.model.config
        budget, can_grow = initial_budget(
            loaded.device,
            config.hidden_size,
            getattr(config, "num_hidden_layers", 1),
            settings.token_budget,
        )
        heads = getattr(config, "num_attention_heads", 1)
        self.budget = TokenBudget(budget, config.hidden_size * 8 / heads, can_grow)
        self.baseline_id = baseline_token_id(self.special, settings.baseline)
        self.embedding_rows = loaded.word_embeddings.num_embeddings
        self.predictor = BatchPredictor(
            self.forward, self.budget, self.special["pad"], settings.max_batch_rows, loaded.device
        )
        self.model_evals = 0  # forward+backward example evaluations, for benchmarks

    # ----------------------------------------------------------------------------- public
    def run(
        self, rows: Sequence[TokenizedRow], labels: Sequence[int | None] | None = None
    ) -> list[RowResult]:
        """Attribute `rows`; returns one result per (row, target) in input order.

        Args:
            rows: tokenized rows; error rows pass through as error results.
            labels: true class per row (needed when `target` is "label").
        """
        results: dict[int, list[RowResult]] = {}
        segments, seg_rows, truncated = self._segment(rows, results)
        probs = self._predict(segments, results)
        items = self._items(rows, labels, seg_rows, probs, results)
        item_results, steps = self._attribute_all(segments, items, results)
        failed = set(results)
        for (row, target), item_ids in _group(items, segments).items():
            if row in failed:
                continue
            results.setdefault(row, []).append(
                self._assemble(
                    rows[row],
                    row,
                    target,
                    item_ids,
                    segments,
                    items,
                    item_results,
                    steps,
                    probs,
                    truncated[row],
                )
            )
        return [r for i in range(len(rows)) for r in results.get(i, [])]

    # ------------------------------------------------------------------------ preparation
    def _segment(self, rows, results):
        segments: list[Segment] = []
        seg_rows: dict[int, list[int]] = {}
        truncated: dict[int, bool] = {}
        s = self.settings
        for i, row in enumerate(rows):
            if not row.ok:
                results[i] = [RowResult(i, row.error_code, row.error, n_unknown=row.n_unknown)]
                continue
            bad_token = out_of_range_token(row.content_ids, self.embedding_rows)
            if bad_token is not None:
                results[i] = [RowResult(i, "invalid_token", bad_token, n_unknown=row.n_unknown)]
                continue
            try:
                segs, truncated[i] = make_segments(
                    i,
                    row,
                    self.special["cls"],
                    self.special["sep"],
                    self.max_tokens,
                    s.long_policy,
                    s.window_stride,
                )
            except ValueError as exc:
                results[i] = [RowResult(i, "too_long", str(exc), n_unknown=row.n_unknown)]
                continue
            seg_rows[i] = list(range(len(segments), len(segments) + len(segs)))
            segments.extend(segs)
        return segments, seg_rows, truncated

    def _predict(self, segments: list[Segment], results) -> np.ndarray:
        """Softmax probabilities per segment, `[n_segments, n_classes]`; a row with a segment
        that cannot be predicted becomes an error result (its probabilities stay NaN)."""
        prediction = self.predictor([s.ids for s in segments], self.loaded.num_labels)
        for seg, (code, message) in prediction.failures.items():
            row = segments[seg].row
            results[row] = [RowResult(row, code, message)]
        return prediction.probs

    def _items(self, rows, labels, seg_rows, probs, results) -> list[_Item]:
        items = []
        for row, seg_ids in seg_rows.items():
            if row in results:  # its prediction failed
                continue
            row_probs = probs[seg_ids].mean(axis=0)
            try:
                targets = self._targets(row_probs, None if labels is None else labels[row])
            except ValueError as exc:
                results[row] = [
                    RowResult(
                        row,
                        "invalid_target",
                        str(exc),
                        pred=int(row_probs.argmax()),
                        probs=row_probs,
                        n_unknown=rows[row].n_unknown,
                    )
                ]
                continue
            items.extend(_Item(seg, t) for t in targets for seg in seg_ids)
        return items

    def _targets(self, row_probs: np.ndarray, label) -> list[int]:
        n_classes = len(row_probs)
        target = self.settings.target
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
    def _attribute_all(self, segments, items, results):
        """Run every item; adaptive steps re-run items over tolerance at 2x, 4x ... max_steps."""
        s = self.settings
        steps = dict.fromkeys(range(len(items)), s.n_steps if self.method.uses_steps else 0)
        done = self._run_items(segments, items, list(range(len(items))), s.n_steps, results)
        todo = self._over_tolerance(done)
        n_steps = s.n_steps
        while s.adaptive_steps and self.method.uses_steps and todo and n_steps < s.max_steps:
            n_steps = min(n_steps * 2, s.max_steps)
            redo = self._run_items(segments, items, todo, n_steps, results)
            done.update(redo)
            steps.update(dict.fromkeys(redo, n_steps))
            todo = self._over_tolerance(redo)
        return done, steps

    def _over_tolerance(self, done: dict[int, _ItemResult]) -> list[int]:
        tol = self.settings.delta_tolerance
        return [i for i, r in done.items() if _relative(r.delta, r.gap) > tol]

    def _run_items(self, segments, items, todo, n_steps, results) -> dict[int, _ItemResult]:
        """Attribute items `todo` in length-sorted micro-batches under the token budget."""
        evals = self.method.evals_per_row(n_steps)
        pending = deque(sorted(todo, key=lambda i: segments[items[i].segment].seq_len))
        done: dict[int, _ItemResult] = {}
        while pending:
            take = [pending.popleft()]
            plan = self.budget.plan(
                segments[items[take[0]].segment].seq_len, evals, self.settings.max_batch_rows
            )
            while pending:
                nxt = self.budget.plan(
                    segments[items[pending[0]].segment].seq_len, evals, self.settings.max_batch_rows
                )
                if len(take) + 1 > nxt.rows:
                    break
                take.append(pending.popleft())
                plan = nxt
            self._run_micro_batch(segments, items, take, plan, n_steps, done, pending, results)
        return done

    def _run_micro_batch(
        self, segments, items, take, plan: ChunkPlan, n_steps, done, pending, results
    ) -> None:
        batch = self._batch([items[i] for i in take], segments)
        try:
            if self.fault_hook is not None:
                self.fault_hook(batch.size, batch.seq_len)
            out = self.method.attribute(
                batch, n_steps, plan.internal_batch_size, self.settings.integration_method
            )
        except Exception as exc:  # noqa: BLE001 - every failure must end as a row, not a crash
            self._recover(exc, segments, items, take, plan, batch, n_steps, done, pending, results)
            return
        self.budget.on_success()
        self.model_evals += batch.size * self.method.evals_per_row(n_steps)
        self._scatter(out, batch, take, done)

    def _recover(self, exc, segments, items, take, plan, batch, n_steps, done, pending, results):
        if is_out_of_memory(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if self.budget.on_oom(plan, batch.seq_len):
                pending.extendleft(reversed(take))
                return
            message = (
                f"out of memory even for one row of {batch.seq_len} tokens in chunks of "
                f"one example; use a larger device or tokenize.long_policy=window"
            )
            self._fail(take, items, segments, "oom", message, results)
            return
        if len(take) > 1:  # isolate the row that fails
            for i in take:
                single = ChunkPlan(1, max(1, plan.internal_batch_size // len(take)))
                self._run_micro_batch(segments, items, [i], single, n_steps, done, pending, results)
            return
        self._fail(
            take, items, segments, "attribution_failed", f"{type(exc).__name__}: {exc}", results
        )

    def _fail(self, take, items, segments, code, message, results) -> None:
        for i in take:
            row = segments[items[i].segment].row
            results[row] = [RowResult(row, code, message)]

    def _scatter(self, out, batch: Batch, take, done) -> None:
        attr = out.token_attr.detach().float().cpu().numpy()
        delta = out.delta.cpu().numpy() if out.delta is not None else np.full(len(take), np.nan)
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for j, (i, n) in enumerate(zip(take, lengths, strict=True)):
            extras = {k: (v[j] if v.ndim == 1 else v[j, ..., :n]) for k, v in out.extras.items()}
            token_attr = attr[j, :n]
            gap = float(token_attr.sum() - delta[j])
            done[i] = _ItemResult(token_attr, float(delta[j]), gap, extras)

    def _batch(self, batch_items: list[_Item], segments: list[Segment]) -> Batch:
        ids, mask = self._pad([segments[it.segment].ids for it in batch_items])
        baseline = ids.clone()
        content = mask.bool().clone()
        content[:, 0] = False
        content[torch.arange(len(ids)), mask.sum(dim=1) - 1] = False  # [SEP]
        baseline[content] = self.baseline_id
        device = self.loaded.device
        targets = torch.tensor([it.target for it in batch_items], device=device)
        return Batch(ids, baseline, mask, targets)

    def _pad(self, sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to `[batch, max_len]` ids and attention mask on the model's device."""
        return pad_batch(sequences, self.special["pad"], self.loaded.device)

    # ------------------------------------------------------------------------- assembly
    def _assemble(
        self,
        row: TokenizedRow,
        row_index,
        target,
        item_ids,
        segments,
        items,
        item_results,
        steps,
        probs,
        truncated,
    ) -> RowResult:
        if any(i not in item_results for i in item_ids):
            return RowResult(row_index, "attribution_failed", "a window failed")
        segs = [segments[items[i].segment] for i in item_ids]
        parts = [item_results[i] for i in item_ids]
        n_content = max(s.offset + s.seq_len - 2 for s in segs)
        offsets = [s.offset for s in segs]
        token_attr = stitch_tokens([p.token_attr for p in parts], offsets, n_content)
        covered = int(segs[-1].spans[-1, 1]) if truncated else row.length
        sums, counts = np.zeros(covered), np.zeros(covered)
        for seg, part in zip(segs, parts, strict=True):
            s_sum, s_cnt = residue_sums(part.token_attr[1:-1], seg.spans, covered)
            sums, counts = sums + s_sum, counts + s_cnt
        residue_attr = np.divide(sums, counts, out=np.zeros(covered), where=counts > 0)
        row_probs = probs[[items[i].segment for i in item_ids]].mean(axis=0)
        ids = np.concatenate(
            [[self.special["cls"]], row.content_ids[:n_content], [self.special["sep"]]]
        ).astype(np.int64)
        return RowResult(
            row_index,
            target=target,
            pred=int(row_probs.argmax()),
            probs=row_probs,
            token_ids=ids,
            token_attr=token_attr.astype(np.float32),
            residue_attr=residue_attr.astype(np.float32),
            delta=float(sum(p.delta for p in parts)),
            delta_rel=max(_relative(p.delta, p.gap) for p in parts),
            n_steps=max(steps[i] for i in item_ids),
            truncated=truncated,
            windows=len(segs),
            n_unknown=row.n_unknown,
            extras=_stitch_extras(parts, offsets, n_content),
        )


def _relative(delta: float, gap: float) -> float:
    if math.isnan(delta):
        return float("nan")
    return abs(delta) / max(abs(gap), GAP_FLOOR)


def _group(items: list[_Item], segments: list[Segment]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((segments[it.segment].row, it.target), []).append(i)
    return groups


def _stitch_extras(parts: list[_ItemResult], offsets: list[int], n_content: int) -> dict:
    extras = {}
    for key, first in parts[0].extras.items():
        values = [p.extras[key] for p in parts]
        if np.ndim(first) == 0:
            extras[key] = float(np.mean(values))
        else:
            extras[key] = stitch_tokens(values, offsets, n_content)
    return extras
