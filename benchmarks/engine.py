"""Benchmark: the batched attribution engine against the one-at-a-time recipe, on CPU.

Run `.venv/bin/python benchmarks/engine.py` (a few minutes) or `... --quick` (under a minute).
Everything is measured in one process on random-weight BERT classifiers that are saved with
`save_pretrained` and loaded back through `raysattr.models.load_model`, on seeded DNA sequences
tokenized by raysattr's k-mer tokenizer (k=3) with token lengths spread over 20-500.

Models: `tiny` (hidden 64, 2 layers, 4 heads) on every row, and `bert-base` (hidden 768, 12 layers,
12 heads, intermediate 3072) on a small subset of short rows with few steps, because bert-base
runs only ~330-420 tokens/s forward+backward on this CPU. The subset is printed. Weights are
drawn with std 0.3 (tiny) and 0.05 (bert-base): at bert-base's usual 0.02 the output barely
depends on the input (F(x) - F(x') ~ 1e-3), at 0.1 the 12 layers are so chaotic that IG does not
converge even at 32 steps.

Per model:

- **ceiling**: forward+backward tokens/s of the bare model (gradient w.r.t. the embeddings
  output, weights frozen as in the engine) on one batch of `n_steps` examples per row length,
  i.e. the least work one-at-a-time IG could do; best of a few repeats, before and after the
  variants. Length-matched because tokens/s depends on length (attention is quadratic, short
  batches are overhead-bound): the tiny model runs ~2x faster at 90 tokens than at 500. The
  value at the token-weighted mean length is printed too.
- **variants**, each timed with `time.perf_counter` after a warm-up call on a separate short row:
  (a) the seed recipe one row at a time, `softmax(model(ids)[0], dim=1)[0][0]` (broken: it keeps
  only the first interpolation step); (b) the corrected recipe one row at a time,
  `softmax(logits, -1)[:, target]` with the engine's target per row; (c) the engine in fp32;
  (d) the engine under bf16 autocast; (e) the engine with adaptive steps (starts at n_steps/4,
  doubles rows whose delta_rel exceeds 0.01, up to 2 x n_steps). (a)/(b) use Captum's default
  `internal_batch_size=None` (all steps in one chunk); the engine chooses its own chunks from
  its token budget.

How to read the table:

- `seq/s`: sequences attributed per second; `x(b)`: speed relative to the corrected recipe.
- `%ceil`: token evaluations/s as a share of the ceiling. A token evaluation is one real token
  (specials included, padding excluded) in one interpolation step, i.e. sum over rows of
  `(n_tokens + 2) * steps`; for (e) the steps of every adaptive round are counted. The forwards
  Captum adds for the convergence delta (2 per row) and the engine's prediction forward are
  *not* counted, so they, padding and chunking overhead all show up as a lower share. The
  ceiling is fp32, so bf16 can exceed 100 %.
- `evals/row`: forward+backward examples per row (`engine.model_evals` for the engine).
- `pad%`: share of the evaluated tokens that were padding; `chunks`: forward+backward passes
  (Captum chunks of `internal_batch_size`). The `(c) micro-batches` line lists the engine's
  plan as `rows x padded length / internal_batch_size`: it explains where the engine loses.
- `delta_rel`: |convergence delta| / |F(x) - F(x')| per row (median / p95 / max).
- correctness lines: cosine of (a) vs (c) per row shows the seed bug (the seed explains class 0;
  for rows whose target is class 1 the class-0 map of a 2-class model is exactly minus the
  class-1 map, so (c) is negated there); max |(b) - (c)| / max|(c)| should be ~1e-6; (d) and
  (e) are compared with (c) the same way.

The 1-minute load average is printed at the start, after each model and at the end; the
benchmark itself adds ~2 (two threads). Competing processes distort timings badly on two cores
(OpenMP threads stall at every op's barrier: tiny-model runs got 3-5x slower at load ~3, the
engine's many small chunks worst), so rerun when the starting load is well above 0.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer
from transformers.utils import logging as hf_logging

from raysattr.attribution import AttributionEngine, RowResult
from raysattr.attribution.assemble import GAP_FLOOR
from raysattr.config import AttributionConfig, ModelConfig
from raysattr.models import LoadedModel, load_model
from raysattr.tokenize import TokenizedRow, build_kmer_vocab, make_tokenizer

K = 3  # 3-mers: a 64-word vocabulary, so any DNA length maps to tokens
MAX_POSITIONS = 512
SEED = 0


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    init_range: float  # F(x) - F(x') well above 0, IG still convergent


@dataclass(frozen=True)
class Plan:
    """What one model is benchmarked on."""

    shape: ModelShape
    n_rows: int  # rows taken from the data set (spread over its lengths)
    max_tokens: int  # only rows with at most this many content tokens
    n_steps: int
    repeats: int  # each variant and the ceiling: best of this many timed runs


@dataclass
class VariantRun:
    """One timed variant: per-row maps `[n_tokens + 2]`, deltas and cost."""

    name: str
    seconds: float
    token_attr: list[np.ndarray]
    delta_rel: np.ndarray
    token_evals: int
    evals_per_row: float
    steps: list[int]
    padded_evals: int  # token evaluations including padding
    chunks: int  # forward+backward passes (Captum chunks)
    micro_batches: list[tuple[int, int, int, int]] = field(default_factory=list)


TINY = ModelShape("tiny", 64, 2, 4, 256, 0.3)
BERT_BASE = ModelShape("bert-base", 768, 12, 12, 3072, 0.05)


def plans(quick: bool) -> tuple[int, list[Plan]]:
    """Number of rows in the data set and the per-model plans."""
    if quick:
        return 8, [Plan(TINY, 8, 500, 16, 2), Plan(BERT_BASE, 2, 120, 8, 1)]
    return 24, [Plan(TINY, 24, 500, 50, 3), Plan(BERT_BASE, 4, 250, 16, 1)]


# ----------------------------------------------------------------------------- data and models
def dna_sequences(n_rows: int, seed: int = SEED) -> list[str]:
    """`n_rows` random DNA strings whose 3-mer token counts spread evenly over 20-500, shuffled."""
    rng = np.random.default_rng(seed)
    n_tokens = rng.permutation(np.linspace(20, 500, n_rows).round().astype(int))
    return ["".join(rng.choice(list("ACGT"), n + K - 1)) for n in n_tokens]


def kmer_hf_tokenizer() -> BertTokenizer:
    """The DNABERT-layout tokenizer every benchmark model is saved with."""
    vocab = build_kmer_vocab(K)
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)


def save_and_load(shape: ModelShape, out_dir: Path, device: str = "cpu") -> LoadedModel:
    """Save a random-weight `BertForSequenceClassification` + k-mer tokenizer, load it back."""
    tokenizer = kmer_hf_tokenizer()
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=MAX_POSITIONS,
        num_labels=2,
        initializer_range=shape.init_range,
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    loaded = load_model(ModelConfig(path=str(out_dir)), device)
    for p in loaded.model.parameters():
        p.requires_grad_(False)  # as the engine does, so every variant runs the same graph
    return loaded


def subset(rows: list[TokenizedRow], count: int, max_tokens: int) -> list[TokenizedRow]:
    """`count` rows of at most `max_tokens` tokens, spread over their lengths, in input order."""
    eligible = [i for i, r in enumerate(rows) if r.n_tokens <= max_tokens]
    by_length = sorted(eligible, key=lambda i: rows[i].n_tokens)
    picks = np.linspace(0, len(by_length) - 1, min(count, len(by_length))).round().astype(int)
    return [rows[i] for i in sorted({by_length[p] for p in picks})]


def recipe_inputs(loaded: LoadedModel, row: TokenizedRow) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeds' `[CLS] + ids + [SEP]` input and `[CLS] + [PAD]*n + [SEP]` baseline, `[1, L]`."""
    sp = loaded.special_ids()
    ids = torch.tensor([[sp["cls"], *row.content_ids.tolist(), sp["sep"]]])
    base = torch.tensor([[sp["cls"]] + [sp["pad"]] * row.n_tokens + [sp["sep"]]])
    return ids, base


# --------------------------------------------------------------------------------- ceiling
def ceiling_seconds(
    loaded: LoadedModel, lengths: list[int], batch: int, repeats: int
) -> dict[int, float]:
    """Best seconds of one forward+backward of a `[batch, L]` batch, per distinct length L.

    The gradient is taken w.r.t. the embeddings output (made a leaf by a hook), as LIG does.
    """
    captured: dict[str, torch.Tensor] = {}

    def leaf_embeddings(_module, _inputs, out):
        captured["emb"] = out.detach().requires_grad_()
        return captured["emb"]

    def step(ids: torch.Tensor) -> None:
        logits = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        torch.autograd.grad(torch.softmax(logits, -1)[:, 0].sum(), captured["emb"])

    torch.manual_seed(SEED)
    vocab = loaded.tokenizer.vocab_size
    batches = {n: torch.randint(5, vocab, (batch, n)) for n in sorted(set(lengths))}
    handle = loaded.embeddings.register_forward_hook(leaf_embeddings)
    try:
        step(batches[min(batches)])  # warm-up
        return {n: best_of(repeats, partial(step, ids))[0] for n, ids in batches.items()}
    finally:
        handle.remove()


# ------------------------------------------------------------------------- one-at-a-time recipes
def seed_row(loaded: LoadedModel, row: TokenizedRow, target: int, n_steps: int):
    """The seeds' recipe verbatim (explains class 0 of row 0 of the expanded batch only)."""
    model = loaded.model
    lig = LayerIntegratedGradients(
        lambda ids: torch.softmax(model(ids)[0], dim=1)[0][0].unsqueeze(-1), loaded.embeddings
    )
    ids, base = recipe_inputs(loaded, row)
    attr, delta = lig.attribute(ids, base, n_steps=n_steps, return_convergence_delta=True)
    return attr.sum(-1)[0].detach().numpy(), float(delta)


def corrected_row(loaded: LoadedModel, row: TokenizedRow, target: int, n_steps: int):
    """The seeds' recipe with one value per row: `softmax(logits, -1)[:, target]`."""
    model = loaded.model
    lig = LayerIntegratedGradients(
        lambda ids: torch.softmax(model(input_ids=ids).logits, dim=-1)[:, target],
        loaded.embeddings,
    )
    ids, base = recipe_inputs(loaded, row)
    attr, delta = lig.attribute(ids, base, n_steps=n_steps, return_convergence_delta=True)
    return attr.sum(-1)[0].detach().numpy(), float(delta)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Fastest of `repeats` timed calls (other processes only ever add time) and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        if seconds < best:
            best, result = seconds, out
    return best, result


def run_one_at_a_time(name, recipe, loaded, rows, targets, warm, n_steps, repeats) -> VariantRun:
    """Time `recipe` over `rows` one by one, after one warm-up call on `warm`."""
    recipe(loaded, warm, 0, n_steps)
    seconds, outputs = best_of(
        repeats,
        lambda: [recipe(loaded, r, t, n_steps) for r, t in zip(rows, targets, strict=True)],
    )
    maps = [m for m, _ in outputs]
    rel = [_relative(d, float(m.sum()) - d) for m, d in outputs]
    steps = [n_steps] * len(rows)
    evals = _token_evals(rows, steps)
    return VariantRun(name, seconds, maps, np.array(rel), evals, n_steps, steps, evals, len(rows))


def _relative(delta: float, gap: float) -> float:
    return abs(delta) / max(abs(gap), GAP_FLOOR)


def _token_evals(rows: list[TokenizedRow], steps: list[int]) -> int:
    return sum((r.n_tokens + 2) * s for r, s in zip(rows, steps, strict=True))


# --------------------------------------------------------------------------------- the engine
def run_engine(
    name, loaded, rows, warm, repeats, dtype="float32", **settings
) -> tuple[VariantRun, list[RowResult]]:
    """Time `AttributionEngine.run(rows)` after a warm-up run on `warm` (`settings` are
    `attribution.*` keys)."""
    settings = {"quadrature": "fixed", **settings}  # equal nodes with the recipe
    engine = AttributionEngine(loaded, AttributionConfig(method="lig", **settings), dtype=dtype)
    engine.run([warm])
    engine.model_evals = 0
    log = MicroBatchLog(engine)
    seconds, (results, calls) = best_of(repeats, lambda: (engine.run(rows), log.take()))
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"{name}: row {bad[0].row_index} failed: {bad[0].error}")
    first, top = settings["n_steps"], settings.get("max_steps", settings["n_steps"])
    spent = [_steps_spent(r.n_steps, first, top) for r in results]
    run = VariantRun(
        name,
        seconds,
        [r.token_attr for r in results],
        np.array([r.delta_rel for r in results]),
        _token_evals(rows, spent),
        engine.model_evals / repeats / len(rows),
        [r.n_steps for r in results],
        sum(size * seq_len * n for size, seq_len, n, _ in calls),
        sum(math.ceil(size * n / chunk) for size, _, n, chunk in calls),
        calls,
    )
    return run, results


class MicroBatchLog:
    """Records `(rows, padded length, n_steps, internal_batch_size)` of each engine micro-batch."""

    def __init__(self, engine: AttributionEngine):
        self.calls: list[tuple[int, int, int, int]] = []
        inner = engine.method.attribute

        def attribute(batch, n_steps, internal_batch_size):
            self.calls.append((batch.size, batch.seq_len, n_steps, internal_batch_size))
            return inner(batch, n_steps, internal_batch_size)

        engine.method.attribute = attribute

    def take(self) -> list[tuple[int, int, int, int]]:
        calls, self.calls = self.calls, []
        return calls


def _steps_spent(final: int, first: int, max_steps: int) -> int:
    """Steps evaluated over all adaptive rounds (first, 2x first, ... up to `final`)."""
    total, steps = first, first
    while steps < final:
        steps = min(steps * 2, max_steps)
        total += steps
    return total


# ----------------------------------------------------------------------------------- reporting
@dataclass
class Ceiling:
    """Best forward+backward seconds of one `[batch, L]` batch, per padded length L."""

    batch: int
    seconds: dict[int, float]

    def at(self, seq_len: int) -> float:
        """Tokens/s at one length."""
        return self.batch * seq_len / self.seconds[seq_len]

    def tokens_per_s(self, lengths: list[int]) -> float:
        """Length-matched: one batch per row length, total tokens over total seconds."""
        return self.batch * sum(lengths) / sum(self.seconds[n] for n in lengths)


def print_ceiling(ceiling: Ceiling, lengths: list[int], rep_len: int, repeats: int) -> None:
    per_length = {n: ceiling.at(n) for n in lengths}
    slow, fast = min(per_length, key=per_length.get), max(per_length, key=per_length.get)
    print(
        f"  ceiling (forward+backward of [{ceiling.batch}, L], best of {repeats} before and "
        f"{repeats} after the variants):\n"
        f"    length-matched over the rows {ceiling.tokens_per_s(lengths):,.0f} tokens/s "
        f"(L={slow}: {per_length[slow]:,.0f} .. L={fast}: {per_length[fast]:,.0f}); at the "
        f"token-weighted mean L={rep_len}: {ceiling.at(rep_len):,.0f}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def max_rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest per-row max |a - b| / max |b|."""
    return max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(a, b, strict=True))


def spread(values: np.ndarray) -> str:
    q = np.percentile(values, [50, 95, 100])
    return f"{q[0]:.1e} / {q[1]:.1e} / {q[2]:.1e}"


def print_table(runs: list[VariantRun], ceiling: float) -> None:
    reference = next(r for r in runs if r.name.startswith("(b)"))
    print(
        f"  {'variant':<22}{'seconds':>8}{'seq/s':>8}{'x(b)':>6}{'%ceil':>7}{'evals/row':>10}"
        f"{'pad%':>6}{'chunks':>7}   delta_rel med / p95 / max"
    )
    for run in runs:
        seq_s = len(run.steps) / run.seconds
        ratio = reference.seconds / run.seconds
        share = 100 * run.token_evals / run.seconds / ceiling
        padding = 100 * (1 - run.token_evals / run.padded_evals)
        print(
            f"  {run.name:<22}{run.seconds:8.2f}{seq_s:8.3f}{ratio:6.2f}{share:6.0f}%"
            f"{run.evals_per_row:10.1f}{padding:5.0f}%{run.chunks:7d}   {spread(run.delta_rel)}"
        )
    engine = next(r for r in runs if r.name.startswith("(c)"))
    shown = " ".join(
        f"{size}x{seq_len}/{chunk}" for size, seq_len, _, chunk in engine.micro_batches
    )
    print(f"  (c) micro-batches (rows x padded length / internal_batch_size): {shown}")


def print_correctness(runs: dict[str, VariantRun], targets: list[int]) -> None:
    seed, fp32 = runs["a"].token_attr, runs["c"].token_attr
    signs = [1.0 if t == 0 else -1.0 for t in targets]  # class-0 map = -(class-1 map), 2 classes
    cos = [cosine(a, s * c) for a, c, s in zip(seed, fp32, signs, strict=True)]
    print(
        f"  (a) vs (c) cosine per row (seed bug): min {min(cos):.3f}  median "
        f"{np.median(cos):.3f}  max {max(cos):.3f}  [{' '.join(f'{c:.2f}' for c in cos)}]"
    )
    worst = max_rel_diff(runs["b"].token_attr, fp32)
    print(f"  (b) vs (c) max |diff| / max|c| over rows: {worst:.1e}")
    for key, label in (("d", "bf16"), ("e", "adaptive")):
        other = runs[key].token_attr
        worst_cos = min(cosine(x, y) for x, y in zip(other, fp32, strict=True))
        print(
            f"  ({key}) {label} vs (c): max |diff| / max|c| {max_rel_diff(other, fp32):.1e}"
            f"  min cosine {worst_cos:.6f}"
        )
    steps = sorted(Counter(runs["e"].steps).items())
    print(f"  (e) steps used (final n_steps: rows): {dict(steps)}")


# ----------------------------------------------------------------------------------- main
def benchmark_model(
    plan: Plan, all_rows: list[TokenizedRow], warm: TokenizedRow, workdir: Path
) -> None:
    """Ceiling, the five variants and the correctness ratios for one model."""
    loaded = save_and_load(plan.shape, workdir / plan.shape.name)
    rows = subset(all_rows, plan.n_rows, plan.max_tokens)
    _print_header(plan, rows)
    lengths = [r.n_tokens + 2 for r in rows]
    rep_len = round(sum(n * n for n in lengths) / sum(lengths))
    measure = partial(ceiling_seconds, loaded, [*lengths, rep_len], plan.n_steps, plan.repeats)
    before = measure()
    runs, targets = run_variants(loaded, rows, warm, plan)
    after = measure()  # best of before/after: a burst of load rarely hits both
    ceiling = Ceiling(plan.n_steps, {n: min(t, after[n]) for n, t in before.items()})
    print_ceiling(ceiling, lengths, rep_len, plan.repeats)
    print_table(list(runs.values()), ceiling.tokens_per_s(lengths))
    print_correctness(runs, targets)


def run_variants(loaded, rows, warm, plan: Plan) -> tuple[dict[str, VariantRun], list[int]]:
    """Variants (a)-(e) keyed by letter, and the engine's target class per row."""
    n, r = plan.n_steps, plan.repeats
    c, results = run_engine("(c) engine fp32", loaded, rows, warm, r, n_steps=n)
    targets = [res.target for res in results]
    first = max(1, n // 4)
    adaptive = dict(n_steps=first, adaptive_steps=True, delta_tolerance=0.01, max_steps=2 * n)
    runs = {
        "a": run_one_at_a_time("(a) seed, 1 row", seed_row, loaded, rows, targets, warm, n, r),
        "b": run_one_at_a_time(
            "(b) corrected, 1 row", corrected_row, loaded, rows, targets, warm, n, r
        ),
        "c": c,
        "d": run_engine("(d) engine bf16", loaded, rows, warm, r, n_steps=n, dtype="bfloat16")[0],
        "e": run_engine(f"(e) adaptive {first}..{2 * n}", loaded, rows, warm, r, **adaptive)[0],
    }
    return runs, targets


def _print_header(plan: Plan, rows: list[TokenizedRow]) -> None:
    s = plan.shape
    tokens = sorted(r.n_tokens for r in rows)
    print(
        f"\n== {s.name}: hidden {s.hidden}, {s.layers} layers, {s.heads} heads, intermediate "
        f"{s.intermediate}; n_steps {plan.n_steps}"
    )
    print(
        f"  rows: {len(rows)} of <= {plan.max_tokens} tokens, content tokens {tokens} "
        f"(total {sum(tokens)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and steps")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (issue-12 sections)")
    parser.add_argument(
        "--sections",
        default="models,demo,many,bf16",
        help="comma-separated: models (the per-model table), demo (path rule, reference, bf16 "
        "guard on the demo model), many (many rows per length), bf16 (path rule fp32 vs bf16 + "
        "guard on many's bert-base rows)",
    )
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "raysattr-bench-work"),
        help="keeps the trained demo model between runs",
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.manual_seed(SEED)
    hf_logging.disable_progress_bar()
    n_rows, model_plans = plans(args.quick)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.2f}; {n_rows} DNA rows, k={K}"
    )
    with tempfile.TemporaryDirectory(prefix="raysattr-bench-") as tmp:
        tokenize = make_tokenizer("kmer", kmer_hf_tokenizer(), K)
        rows = [tokenize(s) for s in dna_sequences(n_rows)]
        warm = tokenize(dna_sequences(1, seed=SEED + 1)[0])  # 20 tokens, not a measured row
        if "models" in sections:
            for plan in model_plans:
                benchmark_model(plan, rows, warm, Path(tmp))
        issue12_sections(args, sections, Path(tmp))
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.2f}"
    )


def issue12_sections(args, sections: set[str], tmp: Path) -> None:
    """The path rule on the demo model, bf16 with the guard, many rows per length
    (`engine_paths`)."""
    import engine_paths  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if "demo" in sections:
        engine_paths.demo_section(workdir, 60 if args.quick else 300, args.device, args.quick)
    if sections & {"many", "bf16"}:
        many = [(TINY, 100 if args.quick else 500, 500), (BERT_BASE, 8 if args.quick else 16, 64)]
        if "many" not in sections:  # bf16 alone: its rows only
            many = many[1:]
        engine_paths.many_rows_section(
            many, save_and_load, tmp, 8, args.device, bf16="bf16" in sections
        )


if __name__ == "__main__":
    main()
