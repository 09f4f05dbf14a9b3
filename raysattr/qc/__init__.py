"""`raysattr qc`: faithfulness of attributions: deletion and insertion curves with AOPC against a
random-order control, and a baseline sanity check, on a deterministic sample of a run's
`attributions/`.

For each sampled row and each fraction f of `qc.fractions`, the k = ceil(f * n) content tokens
with the highest signed score toward the explained target (`token_attr`, descending) are

- deleted: replaced by the baseline token (`attribution.baseline`: pad | mask | unk), or
- inserted: put back into the all-baseline input (every content token replaced),

and the model re-predicts the target's score: its softmax probability, or its logit when
`attribution.output=logit`. `[CLS]`/`[SEP]` are never replaced. The random control ranks the
tokens in `qc.random_repeats` seeded random orders per row and averages the scores over them.
A row's variants share its length, so they are batched with other rows' variants of similar
length under a forward-only token budget (`raysattr.attribution.predict.predict_rows`).

- AOPC comprehensiveness = mean over fractions of (p_full - p_deleted): higher = the top tokens
  matter. AOPC sufficiency = mean over fractions of (p_full - p_inserted): lower = the top tokens
  suffice. Both are averaged over rows, for the attribution order and for the random order.
- Baseline sanity: the run's method applied to the baseline input itself (`[CLS] + baseline * n +
  [SEP]`) for a few sampled rows; the largest |token score| must be ~0 for the integrated-gradient
  family (input == baseline). Gradient methods (saliency, ...) need not give 0.

Sampled rows are `status == 'ok'` rows attributed in one window; windowed rows (`windows > 1`)
are skipped and counted. Truncated rows are kept: `token_ids` are the tokens the model saw. The
sample is the `qc.sample_rows` rows with the smallest seeded hash of (id, target): independent of
part-file order and row count, and read in two streaming passes (keys, then the chosen rows).

Modules: `sampling` (which rows; reading them), `curves` (the variants and their scores: the
`qc.parquet` table), `summary` (AOPC, contrasts, baseline sanity, provenance: `qc.json`), `run`
(the entry point `faithfulness` and `write_qc`).

`qc.parquet`, one row per (id, target, fraction, order):

| column | type | meaning |
|---|---|---|
| `id`, `target` | string, int64 | the row and the class explained |
| `length`, `n_tokens` | int64 | residues; content tokens (between `[CLS]` and `[SEP]`) |
| `fraction`, `order` | float64, string | f; `'attribution'` or `'random'` |
| `k_tokens` | int64 | content tokens replaced or kept: ceil(f * n_tokens) |
| `p_full` | float64 | target score of the unmodified input |
| `p_deleted` | float64 | ... with the top k replaced by the baseline (random: mean of repeats) |
| `p_inserted` | float64 | ... of the all-baseline input with the top k put back |
| `p_baseline` | float64 | ... of the all-baseline input |

`qc.json`: `aopc_comprehensiveness` and `aopc_sufficiency`, each `{attribution, random,
difference}` (difference = attribution - random); `by_target` (the same per class);
`comprehensiveness_win_rate` (share of rows whose comprehensiveness beats random by > 0.01);
`curves` (`fractions`, `deletion` / `insertion` mean scores per order); `n_rows`,
`n_eligible`, `n_skipped` (reason -> rows of the whole output: `windowed`, `status:<code>`);
`baseline_max_abs_attr`, `baseline_sanity_rows`; `p_full_max_abs_diff` (re-predicted vs stored
probability: a different model shows here); `model_fingerprint_match`; `settings` (`qc.*` and
`attribution.{method,output,baseline,n_steps}`); `wall_s`.
"""

from raysattr.qc.run import QCResult, faithfulness, write_qc

__all__ = ["QCResult", "faithfulness", "write_qc"]
