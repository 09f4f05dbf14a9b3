"""The batched engine against the one-at-a-time recipe, for every registered method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients

from raysattr.attribution import AttributionEngine, available_methods, get_method
from raysattr.attribution.base import PER_RESIDUE_LETTER, MethodOutput
from raysattr.attribution.budget import TokenBudget
from raysattr.config import AttributionConfig, TokenizeConfig
from raysattr.config import load as load_config
from raysattr.errors import ConfigError
from raysattr.tokenize import TokenizedRow, make_tokenizer, residue_sums

from .factories import random_dna_model

METHODS = available_methods()


@pytest.fixture(scope="module")
def dna(tmp_path_factory):
    loaded = random_dna_model(tmp_path_factory.mktemp("random-dna"), k=3, max_positions=48)
    return loaded, make_tokenizer("kmer", loaded.tokenizer, k=3)


@pytest.fixture(scope="module")
def rows(dna):
    _, tok = dna
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (9, 30, 14, 41, 22, 5)]
    return [tok(s) for s in seqs]


def make_engine(loaded, dtype="float32", fault_hook=None, **settings) -> AttributionEngine:
    """An engine from flat keyword settings: `tokenize.*` long-sequence keys, the rest
    `attribution.*`."""
    long = {
        k: settings.pop(k) for k in ("max_length", "long_policy", "window_stride") if k in settings
    }
    return AttributionEngine(
        loaded, AttributionConfig(**settings), TokenizeConfig(**long), dtype, fault_hook
    )


def run(dna, rows, labels=None, **settings):
    loaded, _ = dna
    settings.setdefault("n_steps", 8)
    return make_engine(loaded, **settings).run(rows, labels)


def test_unknown_method_lists_available():
    with pytest.raises(ValueError, match="available: .*lig"):
        get_method("gradcam")


def test_registry_has_every_designed_method():
    assert set(METHODS) >= {
        "lig",
        "lig_multi",
        "ig",
        "saliency",
        "input_x_gradient",
        "deeplift",
        "layer_conductance",
        "attention",
    }


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_one_result_per_row_with_aligned_shapes(dna, rows, method):
    loaded, _ = dna
    engine = make_engine(loaded, method=method, n_steps=8)
    results = engine.run(rows)
    declared = engine.method
    assert [r.row_index for r in results] == list(range(len(rows)))
    for r, row in zip(results, rows, strict=True):
        assert r.status == "ok", r.error
        assert len(r.token_ids) == len(r.token_attr) == row.n_tokens + 2
        assert len(r.residue_attr) == row.length
        assert np.isfinite(r.token_attr).all() and np.isfinite(r.residue_attr).all()
        assert np.abs(r.token_attr).sum() > 0
        # What the method declares is what the rows show.
        # The path rule (default) reports the gradient nodes each row used; at least its 9.
        assert (r.n_steps >= 9) if declared.uses_steps else r.n_steps == 0
        assert np.isfinite(r.delta) == np.isfinite(r.delta_rel) == declared.has_delta
        assert set(r.extras) <= set(declared.extras)
        for key, value in r.extras.items():
            if declared.extras[key] == PER_RESIDUE_LETTER:  # [residues, letters]
                assert np.shape(value)[0] == row.length
            else:
                assert np.ndim(value) == 0 or np.shape(value)[-1] == row.n_tokens + 2


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_one_at_a_time(dna, rows, method):
    batched = run(dna, rows, method=method, token_budget=100_000)
    single = run(dna, rows, method=method, max_batch_rows=1)
    for b, s in zip(batched, single, strict=True):
        # 1e-5 of the row's largest score; 1e-10 absorbs float32 summation order on rows whose
        # scores are themselves ~1e-6 (DeepLift on a random model).
        scale = np.abs(s.token_attr).max()
        np.testing.assert_allclose(b.token_attr, s.token_attr, rtol=0, atol=1e-5 * scale + 1e-10)
        for key, value in s.extras.items():
            np.testing.assert_allclose(b.extras[key], value, rtol=1e-5, atol=1e-6)


def oracle_lig(loaded, row, target, n_steps):
    """The seeds' recipe with the corrected forward: one value per row, one sequence at a time."""
    sp = loaded.special_ids()

    def forward(ids):
        return torch.softmax(loaded.model(input_ids=ids).logits, dim=-1)[:, target]

    ids = torch.tensor([[sp["cls"], *row.content_ids.tolist(), sp["sep"]]])
    base = torch.tensor([[sp["cls"]] + [sp["pad"]] * row.n_tokens + [sp["sep"]]])
    lig = LayerIntegratedGradients(forward, loaded.embeddings)
    attr, delta = lig.attribute(
        ids, base, n_steps=n_steps, method="gausslegendre", return_convergence_delta=True
    )
    return attr.sum(-1)[0].detach().numpy(), float(delta)


def test_lig_matches_the_corrected_seed_recipe(dna, rows):
    loaded, _ = dna
    fixed = run(dna, rows, method="lig", n_steps=16, quadrature="fixed")
    for r, row in zip(fixed, rows, strict=True):
        expected, delta = oracle_lig(loaded, row, r.target, 16)
        np.testing.assert_allclose(
            r.token_attr, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
        )
        assert r.delta == pytest.approx(delta, abs=1e-6)


def test_seed_forward_breaks_completeness_where_raysattr_holds(dna, rows):
    """`softmax(logits)[0][0]` differentiates only the first interpolation step."""
    loaded, _ = dna
    sp = loaded.special_ids()
    row = rows[3]
    ids = torch.tensor([[sp["cls"], *row.content_ids.tolist(), sp["sep"]]])
    base = torch.tensor([[sp["cls"]] + [sp["pad"]] * row.n_tokens + [sp["sep"]]])

    def seed_forward(x):
        return torch.softmax(loaded.model(x)[0], dim=1)[0][0].unsqueeze(-1)

    seed_attr, seed_delta = LayerIntegratedGradients(seed_forward, loaded.embeddings).attribute(
        ids, base, n_steps=50, return_convergence_delta=True
    )
    ours = run(dna, [row], method="lig", target="class:0", delta_tolerance=0.005)[0]
    gap = float(ours.token_attr.sum() - ours.delta)  # F(x) - F(x')
    assert abs(gap) > 1e-4
    assert ours.delta_rel < 0.01
    assert abs(float(seed_delta)) > 0.5 * abs(gap)  # completeness fails for the seed recipe
    seed_map = seed_attr.sum(-1)[0].detach().numpy()
    cosine = seed_map @ ours.token_attr / np.linalg.norm(seed_map) / np.linalg.norm(ours.token_attr)
    assert cosine < 0.999


def test_targets_all_label_and_fixed_class(dna, rows):
    every = run(dna, rows, method="saliency", target="all")
    assert [(r.row_index, r.target) for r in every] == [(i, c) for i in range(6) for c in (0, 1)]
    labels = [1, 0, 1, None, 0, 1]
    by_label = run(dna, rows, labels, method="saliency", target="label")
    assert [r.target for r in by_label if r.ok] == [1, 0, 1, 0, 1]
    assert by_label[3].status == "invalid_target" and "no label" in by_label[3].error
    fixed = run(dna, rows, method="saliency", target="class:1")
    assert all(r.target == 1 for r in fixed)
    bad = run(dna, rows, method="saliency", target="class:5")
    assert {r.status for r in bad} == {"invalid_target"}


def test_predicted_target_is_the_argmax(dna, rows):
    for r in run(dna, rows, method="saliency"):
        assert r.target == r.pred == int(np.argmax(r.probs))
        assert r.probs.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("baseline", ["mask", "unk"])
def test_other_baselines_change_the_map(dna, rows, baseline):
    pad = run(dna, rows[:2], method="lig")
    other = run(dna, rows[:2], method="lig", baseline=baseline)
    assert not np.allclose(pad[1].token_attr, other[1].token_attr)
    assert other[1].delta_rel < 0.05


def test_logit_output_changes_scale(dna, rows):
    prob = run(dna, rows[:1], method="lig")[0]
    logit = run(dna, rows[:1], method="lig", output="logit")[0]
    assert not np.allclose(prob.token_attr, logit.token_attr)


def test_error_rows_pass_through_in_order(dna, rows):
    _, tok = dna
    mixed = [rows[0], tok(""), rows[1], tok("AC")]
    results = run(dna, mixed, method="saliency")
    assert [r.status for r in results] == ["ok", "empty_sequence", "ok", "too_short"]


def test_out_of_memory_backs_off_and_loses_no_row(dna, rows):
    loaded, _ = dna
    calls = []

    def hook(n_rows, seq_len):
        calls.append((n_rows, seq_len))
        if n_rows * seq_len > 45:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")

    engine = make_engine(loaded, method="lig", n_steps=4, token_budget=100_000, fault_hook=hook)
    # Each row twice: equal lengths share micro-batches (no padding), which then fail.
    results = engine.run(rows + rows)
    assert [r.status for r in results] == ["ok"] * 2 * len(rows)
    assert engine.budget.oom_count > 0 and engine.budget.value < 100_000
    reference = run(dna, rows, method="lig", n_steps=4)
    for a, b in zip(results, reference + reference, strict=True):
        np.testing.assert_allclose(a.token_attr, b.token_attr, atol=1e-6)


def test_a_row_that_never_fits_becomes_an_oom_error_row(dna, rows):
    loaded, _ = dna

    def hook(n_rows, seq_len):
        if seq_len > 30:
            raise torch.OutOfMemoryError("injected")

    engine = make_engine(loaded, method="saliency", fault_hook=hook)
    statuses = [r.status for r in engine.run(rows)]
    assert statuses == ["ok", "ok", "ok", "oom", "ok", "ok"]


def test_other_failures_are_isolated_to_their_row(dna, rows):
    loaded, _ = dna
    bad_len = rows[2].n_tokens + 2

    def hook(n_rows, seq_len):
        if n_rows == 1 and seq_len == bad_len:
            raise ValueError("poisoned row")
        if n_rows > 1 and seq_len >= bad_len:
            raise ValueError("poisoned batch")

    engine = make_engine(loaded, method="saliency", fault_hook=hook)
    results = engine.run(rows)
    assert results[2].status == "attribution_failed" and "poisoned row" in results[2].error
    assert sum(r.ok for r in results) == len(rows) - 1


def test_adaptive_steps_refine_only_rows_over_tolerance(dna, rows):
    fixed = run(
        dna, rows, method="lig", n_steps=2, integration_method="riemann_left", quadrature="fixed"
    )
    adaptive = run(
        dna,
        rows,
        method="lig",
        quadrature="fixed",
        n_steps=2,
        integration_method="riemann_left",
        adaptive_steps=True,
        delta_tolerance=0.02,
        max_steps=64,
    )
    assert max(r.n_steps for r in adaptive) > 2
    for f, a in zip(fixed, adaptive, strict=True):
        if f.delta_rel <= 0.02:
            assert a.n_steps == 2
        else:
            assert a.delta_rel <= 0.02 or a.n_steps == 64
            assert a.delta_rel < f.delta_rel


def test_long_rows_window_truncate_or_fail(dna):
    loaded, tok = dna
    rng = np.random.default_rng(3)
    long_row = tok("".join(rng.choice(list("ACGT"), 100)))  # 98 tokens > 46
    windowed = run(dna, [long_row], method="lig", long_policy="window")[0]
    assert windowed.ok and windowed.windows == 4 and not windowed.truncated
    assert len(windowed.residue_attr) == 100 and len(windowed.token_attr) == 100
    truncated = run(dna, [long_row], method="lig", long_policy="truncate")[0]
    assert truncated.truncated and truncated.windows == 1
    assert len(truncated.token_attr) == loaded.max_content_tokens + 2
    assert len(truncated.residue_attr) == loaded.max_content_tokens + 2  # k=3 covers 2 more
    refused = run(dna, [long_row], method="lig", long_policy="error")[0]
    assert refused.status == "too_long" and "46" in refused.error


def test_windows_are_stitched_as_the_mean_of_standalone_windows(dna):
    _, tok = dna
    rng = np.random.default_rng(4)
    row = tok("".join(rng.choice(list("ACGT"), 40)))  # 38 tokens, windows of 30: starts 0 and 8
    windowed = run(dna, [row], method="lig", long_policy="window", max_length=30, target="class:0")[
        0
    ]
    assert windowed.windows == 2
    sums, counts = np.zeros(row.length), np.zeros(row.length)
    for start in (0, 8):
        part = TokenizedRow(
            row.content_ids[start : start + 30], row.spans[start : start + 30], row.residues
        )
        alone = run(dna, [part], method="lig", target="class:0")[0]
        s, c = residue_sums(alone.token_attr[1:-1], part.spans, row.length)
        sums, counts = sums + s, counts + c
    np.testing.assert_allclose(windowed.residue_attr, sums / counts, rtol=1e-5, atol=1e-7)


def test_bfloat16_autocast_stays_close_to_float32(dna, rows):
    fp32 = run(dna, rows, method="lig")
    bf16 = run(dna, rows, method="lig", dtype="bfloat16")
    for a, b in zip(fp32, bf16, strict=True):
        cosine = (
            a.token_attr
            @ b.token_attr
            / np.linalg.norm(a.token_attr)
            / np.linalg.norm(b.token_attr)
        )
        assert cosine > 0.99


def test_lig_multi_parts_sum_to_the_total(dna, rows):
    r = run(dna, rows[:2], method="lig_multi")[1]
    parts = sum(r.extras[f"token_attr_{p}"] for p in ("word", "position", "token_type"))
    np.testing.assert_allclose(parts, r.token_attr, atol=1e-6)
    assert np.abs(r.extras["token_attr_token_type"]).max() == 0  # one segment: no difference


def test_layer_conductance_matrix_and_convergence(dna, rows):
    fixed = {"method": "layer_conductance", "quadrature": "fixed"}
    coarse = run(dna, rows[:2], n_steps=16, **fixed)[1]
    fine = run(dna, rows[:2], n_steps=128, **fixed)[1]
    matrix = fine.extras["layer_attr"]
    assert matrix.shape == (2, rows[1].n_tokens + 2)
    np.testing.assert_allclose(matrix.mean(axis=0), fine.token_attr, atol=1e-6)
    # Captum's rule converges slowly (about 1/n_steps, measured): the delta must shrink with
    # steps. The path rule's nodes include the path's ends and sit where F changes.
    assert fine.delta_rel < coarse.delta_rel / 4
    # Row 0 converges at the path rule's first 17 nodes; row 1 (above) misses 0.05 at the cap
    # (Captum's conductance takes the gradient at each interval's left end: first order).
    path = run(dna, rows[:1], method="layer_conductance")[0]
    assert path.delta_rel <= 0.05 and path.converged and path.n_steps == 17


def test_attention_agreement_columns(dna, rows):
    r = run(dna, rows[:2], method="attention")[1]
    assert r.extras["attention_last"].sum() > 0
    for key in (
        "cosine_raw",
        "cosine_norm",
        "cosine_median",
        "cosine_mean",
        "cosine_rank",
        "spearman",
        "top_overlap",
    ):
        for layer in ("last", "all"):
            value = r.extras[f"agree_{layer}_{key}"]
            assert -1.0 - 1e-6 <= value <= 1.0 + 1e-6, key


def test_methods_read_their_own_options(dna):
    loaded, _ = dna
    engine = make_engine(loaded, method="attention", integration_method="riemann_left")
    assert engine.method.compare.name == "lig"
    assert engine.method.compare.integration_method == "riemann_left"
    no_steps = make_engine(loaded, method="attention", compare_method="saliency").method
    assert not no_steps.uses_steps and not no_steps.has_delta
    with pytest.raises(ValueError, match="cannot be 'attention'"):
        make_engine(loaded, method="attention", compare_method="attention")


def test_methods_without_steps_are_not_refined(dna, rows):
    results = run(
        dna, rows, method="saliency", quadrature="fixed", adaptive_steps=True, delta_tolerance=0.0
    )
    assert {r.n_steps for r in results} == {0}


def test_an_output_that_breaks_the_declared_contract_is_an_error(dna, rows):
    loaded, _ = dna
    engine = make_engine(loaded, method="saliency")
    inner = engine.method.attribute

    def with_extra(batch, n_steps, internal_batch_size):
        out = inner(batch, n_steps, internal_batch_size)
        return MethodOutput(out.token_attr, extras={"mystery": np.zeros(batch.size)})

    engine.method.attribute = with_extra
    with pytest.raises(ValueError, match="'saliency' returned extra 'mystery', which it does not"):
        engine.run(rows[:1])
    engine = make_engine(loaded, method="saliency")
    engine.method.has_delta = True
    with pytest.raises(ValueError, match="declares has_delta but returned no delta"):
        engine.run(rows[:1])


def test_deeplift_stores_its_delta(dna, rows):
    results = run(dna, rows, method="deeplift")
    assert all(np.isfinite(r.delta) for r in results)
    assert all(np.isnan(r.delta) for r in run(dna, rows, method="saliency"))


def test_path_rule_agrees_with_a_converged_captum_reference(dna, rows):
    loaded, _ = dna
    results = run(dna, rows[:3], method="lig", delta_tolerance=0.01)
    for r, row in zip(results, rows[:3], strict=True):
        expected, _ = oracle_lig(loaded, row, r.target, 256)
        error = np.linalg.norm(r.token_attr - expected) / np.linalg.norm(expected)
        assert error < 0.02 and r.converged and r.delta_rel <= 0.01 and r.n_steps < 64


def test_rows_over_tolerance_at_the_cap_are_kept_and_marked(dna, rows):
    results = run(dna, rows, method="lig", delta_tolerance=1e-7, max_evals=12)
    assert all(r.ok for r in results)
    assert all(r.converged is (r.delta_rel <= 1e-7) for r in results)
    assert sum(r.converged is False for r in results) >= 4
    assert all(r.converged is None for r in run(dna, rows[:2], method="saliency"))


def test_bf16_rows_over_tolerance_are_recomputed_in_fp32(dna, rows):
    loaded, _ = dna
    settings = {"method": "lig", "delta_tolerance": 0.005, "max_evals": 16}
    engine = make_engine(loaded, dtype="bfloat16", **settings)
    results = engine.run(rows[:3])
    redone = [r for r in results if r.fp32_recomputed]
    assert engine.fp32_recomputes == len(redone) > 0
    fp32 = run(dna, rows[:3], **settings)
    for r, f in zip(results, fp32, strict=True):
        if r.fp32_recomputed:  # the fp32 result
            np.testing.assert_allclose(r.token_attr, f.token_attr, atol=1e-6)
            assert r.delta_rel == pytest.approx(f.delta_rel, abs=1e-6)


def test_a_simulated_memory_limit_settles_the_growing_budget(dna):
    """The CUDA budget path without a GPU: a budget that grows after clean micro-batches (as
    on CUDA) meets a memory limit that the fault hook enforces by raising OOM above a number of
    budget units; within a few micro-batches it settles on plans that fit, close to the
    largest, and loses no row."""
    loaded, tok = dna
    rng = np.random.default_rng(5)
    rows = [tok("".join(rng.choice(list("ACGT"), 32))) for _ in range(400)]  # 30 tokens each
    engine = make_engine(loaded, method="lig", quadrature="fixed", n_steps=4, max_batch_rows=64)
    per_row = 4 * engine.budget.cost(32)  # budget units of one row's 4 steps at 32 tokens
    limit = 40 * per_row + per_row / 2  # 40 rows fit, 41 do not
    budget = TokenBudget(limit / 2, engine.budget.attn_ratio, can_grow=True, grow_after=1)
    engine.budget = engine.predictor.budget = budget
    attempts = []  # (rows, fitted) per micro-batch

    def hook(n_rows, seq_len):
        fits = n_rows * 4 * budget.cost(seq_len) <= limit  # a chunk of every row's 4 steps
        attempts.append((n_rows, fits))
        if not fits:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")

    engine.fault_hook = hook
    results = engine.run(rows)
    assert [r.status for r in results] == ["ok"] * len(rows)
    failed = [i for i, (_, fits) in enumerate(attempts) if not fits]
    assert 1 <= len(failed) == budget.oom_count <= 4 and failed[-1] < 12  # settled early
    after = [n for n, _ in attempts[failed[-1] + 1 : -1]]  # the last may hold the remainder
    assert len(after) >= 3 and min(after[-3:]) >= 30  # then >= 3/4 of the 40 rows that fit


def test_old_adaptive_configs_fail_with_a_clear_message():
    with pytest.raises(ConfigError, match="attribution.quadrature=fixed"):
        load_config(None, ["attribution.adaptive_steps=true"])
    cfg = load_config(None, ["attribution.adaptive_steps=true", "attribution.quadrature=fixed"])
    assert cfg.attribution.adaptive_steps
    with pytest.raises(ConfigError, match="attribution.quadrature"):
        load_config(None, ["attribution.quadrature=simpson"])
