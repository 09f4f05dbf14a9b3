"""Faithfulness checks on attributions of the trained planted-motif DNA model, written the way the
pipeline writes them (engine -> results_to_table -> attributions/part-*.parquet), without Ray.

The motif decides the class, so deleting the tokens LIG ranks highest must destroy the positive
prediction far more than deleting as many random tokens; scores shuffled at random must not."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from raysattr.attribution import AttributionEngine
from raysattr.attribution.base import ModelForward
from raysattr.attribution.budget import TokenBudget
from raysattr.attribution.table import results_to_table
from raysattr.config import AttributionConfig, RunConfig, TokenizeConfig
from raysattr.models import load_model
from raysattr.pipeline.stages import length_bucket
from raysattr.qc import faithfulness
from raysattr.qc.curves import QC_SCHEMA, fraction_counts, predict_scores, row_variants
from raysattr.qc.sampling import sample_keys
from raysattr.tokenize import make_tokenizer

N_ROWS = 80  # single-window rows attributed
N_WINDOWED = 4  # rows attributed in windows (skipped by the check)
SAMPLE = 60


def make_cfg(model_dir, **qc) -> RunConfig:
    cfg = RunConfig()
    cfg.model.path = str(model_dir)
    cfg.attribution.n_steps = 16
    for key, value in qc.items():
        setattr(cfg.qc, key, value)
    return cfg


def attribute_part(
    loaded, table: pa.Table, attribution: AttributionConfig, tokenize: TokenizeConfig | None = None
) -> pa.Table:
    """What the pipeline's tokenize + attribute stages produce for `table`."""
    tok = make_tokenizer("kmer", loaded.tokenizer, k=6)
    rows = [tok(s) for s in table["sequence"].to_pylist()]
    inputs = table.append_column(
        "residues", pa.array([r.residues for r in rows], pa.string())
    ).append_column("bucket", pa.array([length_bucket(r.n_tokens) for r in rows], pa.int32()))
    engine = AttributionEngine(loaded, attribution, tokenize)
    results = engine.run(rows, table["label"].to_pylist())
    provenance = {"run_id": "test", "model_fingerprint": loaded.fingerprint}
    return results_to_table(results, inputs, attribution.method, provenance)


@pytest.fixture(scope="module")
def run_dir(dna_model_dir, dna_table, tmp_path_factory):
    """A run directory: 80 ok rows, 4 windowed rows and one error row in two part files."""
    root = tmp_path_factory.mktemp("qc_run")
    (root / "attributions").mkdir()
    loaded = load_model(make_cfg(dna_model_dir).model)
    # A large budget: the CPU default (4,096) makes this tiny model ~5x slower here.
    fast = AttributionConfig(n_steps=8, token_budget=32768)
    whole = attribute_part(loaded, dna_table.slice(0, N_ROWS), fast)
    pq.write_table(whole, root / "attributions" / "part-a.parquet")
    odd = dna_table.slice(N_ROWS, N_WINDOWED + 1)
    odd = odd.set_column(1, "sequence", pa.array([*odd["sequence"].to_pylist()[:-1], ""]))
    windowed = TokenizeConfig(max_length=24, long_policy="window")
    part_b = attribute_part(loaded, odd, AttributionConfig(n_steps=4, token_budget=32768), windowed)
    pq.write_table(part_b, root / "attributions" / "part-b.parquet")
    return root


@pytest.fixture(scope="module")
def qc(run_dir, dna_model_dir):
    return faithfulness(str(run_dir), make_cfg(dna_model_dir, sample_rows=SAMPLE))


def test_attribution_order_beats_random_order(qc):
    s = qc.summary
    comp, suff = s["aopc_comprehensiveness"], s["aopc_sufficiency"]
    # Measured: comprehensiveness 0.42 vs 0.01 random, sufficiency 0.00 vs 0.28. The positives
    # carry it (0.80 vs 0.02): a negative's class-0 score cannot drop when tokens become [PAD].
    assert comp["attribution"] > comp["random"] + 0.25, comp
    assert suff["attribution"] < suff["random"] - 0.15, suff
    positives = s["by_target"]["1"]["aopc_comprehensiveness"]
    assert positives["attribution"] > 0.6 and positives["random"] < 0.2, positives


def test_baseline_input_gets_zero_attribution(qc):
    assert qc.summary["baseline_sanity_rows"] == 4
    assert qc.summary["baseline_max_abs_attr"] < 1e-6


def test_sample_covers_rows_and_counts_what_it_skipped(qc, run_dir):
    table, s = qc.table, qc.summary
    assert table.schema == QC_SCHEMA
    assert s["n_rows"] == SAMPLE and s["n_eligible"] == N_ROWS
    assert s["n_skipped"] == {"windowed": N_WINDOWED, "status:empty_sequence": 1}
    fractions = RunConfig().qc.fractions
    assert table.num_rows == SAMPLE * len(fractions) * 2
    counts = table.group_by(["id", "order"]).aggregate([("fraction", "count")])
    assert set(counts["fraction_count"].to_pylist()) == {len(fractions)}
    assert pc.count_distinct(table["id"]).as_py() == SAMPLE
    assert s["model_fingerprint_match"] is True and s["p_full_max_abs_diff"] < 1e-5
    written = pq.read_table(run_dir / "qc.parquet")
    assert written.equals(table)
    assert json.loads((run_dir / "qc.json").read_text())["n_rows"] == SAMPLE


def test_sample_and_random_orders_are_deterministic(qc, run_dir, dna_model_dir, tmp_path):
    shutil.copytree(run_dir / "attributions", tmp_path / "attributions")
    again = faithfulness(str(tmp_path), make_cfg(dna_model_dir, sample_rows=SAMPLE))
    assert again.table.equals(qc.table)
    keys, _, _ = sample_keys(str(run_dir), SAMPLE, seed=0)
    assert [k[0] for k in keys] == list(dict.fromkeys(qc.table["id"].to_pylist()))
    assert sample_keys(str(run_dir), SAMPLE, seed=7)[0] != keys
    assert sample_keys(str(run_dir), 10, seed=0)[0] == keys[:10]  # a smaller sample is a prefix


def test_random_scores_give_no_gain_over_random_order(run_dir, dna_model_dir, tmp_path):
    """The control that makes the first test meaningful: the same rows with scores drawn at
    random must not beat the random order."""
    table = pq.read_table(run_dir / "attributions" / "part-a.parquet")
    rng = np.random.default_rng(3)
    noise = [rng.normal(size=len(v)).astype(np.float32) for v in table["token_attr"].to_pylist()]
    index = table.column_names.index("token_attr")
    table = table.set_column(index, "token_attr", pa.array(noise, pa.list_(pa.float32())))
    (tmp_path / "attributions").mkdir()
    pq.write_table(table, tmp_path / "attributions" / "part-a.parquet")
    s = faithfulness(str(tmp_path), make_cfg(dna_model_dir, sample_rows=SAMPLE)).summary
    assert abs(s["aopc_comprehensiveness"]["difference"]) < 0.15, s["aopc_comprehensiveness"]


def test_logit_output_and_mask_baseline_are_honoured(run_dir, dna_model_dir, tmp_path):
    shutil.copytree(run_dir / "attributions", tmp_path / "attributions")
    cfg = make_cfg(dna_model_dir, sample_rows=8, fractions=[0.2, 1.0], random_repeats=1)
    cfg.attribution.output, cfg.attribution.baseline = "logit", "mask"
    qc = faithfulness(str(tmp_path), cfg)
    assert qc.summary["settings"]["baseline"] == "mask" and qc.summary["n_rows"] == 8
    assert qc.summary["p_full_max_abs_diff"] is None  # stored probs are not logits
    assert qc.summary["baseline_max_abs_attr"] < 1e-6
    row = qc.table.slice(0, 1).to_pylist()[0]
    loaded = load_model(cfg.model)
    forward = ModelForward(loaded, "logit")
    mask_id = loaded.tokenizer.mask_token_id
    ids = torch.tensor([[2, *[mask_id] * row["n_tokens"], 3]])
    with torch.no_grad():
        expected = forward.from_ids(ids, torch.ones_like(ids))[0, row["target"]].item()
    assert row["p_baseline"] == pytest.approx(expected, abs=1e-4)
    full = qc.table.filter(pc.equal(qc.table["fraction"], 1.0))  # everything deleted / inserted
    np.testing.assert_allclose(full["p_deleted"], full["p_baseline"], atol=1e-5)
    np.testing.assert_allclose(full["p_inserted"], full["p_full"], atol=1e-5)
    assert max(abs(v) for v in qc.table["p_full"].to_pylist()) > 1  # logits, not probabilities


def test_variants_delete_and_insert_the_top_tokens():
    ids = np.array([2, 10, 11, 12, 13, 3])
    attr = np.array([0.0, 0.1, 0.9, 0.5, -1.0, 0.0])
    orders = np.array([np.argsort(-attr[1:-1], kind="stable")])  # 11, 12, 10, 13
    counts = fraction_counts((0.25, 0.5), 4)
    assert counts.tolist() == [1, 2]
    v = row_variants(ids, orders, counts, baseline_id=0)
    assert v[0].tolist() == ids.tolist() and v[1].tolist() == [2, 0, 0, 0, 0, 3]
    assert v[2].tolist() == [2, 10, 0, 12, 13, 3]  # delete top 1
    assert v[3].tolist() == [2, 0, 11, 0, 0, 3]  # insert top 1
    assert v[4].tolist() == [2, 10, 0, 0, 13, 3]  # delete top 2
    assert v[5].tolist() == [2, 0, 11, 12, 0, 3]  # insert top 2
    assert fraction_counts((0.01, 1.0), 7).tolist() == [1, 7]


def test_batched_scores_equal_one_at_a_time(dna_model_dir):
    loaded = load_model(make_cfg(dna_model_dir).model)
    forward = ModelForward(loaded, "prob")
    rng = np.random.default_rng(0)
    blocks = [
        np.concatenate([[2], rng.integers(5, 4000, n), [3]])[None].repeat(3, 0) for n in (9, 40, 17)
    ]
    for b in blocks:
        b[1:, 2] = 0  # variants differ
    targets = [1, 0, 1]
    batched = predict_scores(forward, TokenBudget(10**6, 64), blocks, targets, 0)
    single = predict_scores(forward, TokenBudget(1, 64), blocks, targets, 0)  # one per forward
    for b, s, block, target in zip(batched, single, blocks, targets, strict=True):
        np.testing.assert_allclose(b, s, atol=1e-6)
        ids = torch.from_numpy(block)
        with torch.no_grad():
            direct = forward.from_ids(ids, torch.ones_like(ids))[:, target].numpy()
        np.testing.assert_allclose(s, direct, atol=1e-6)
        assert b[0] != b[1]  # the replaced token changed the score


def test_no_output_or_no_ok_rows_is_a_clear_error(run_dir, dna_model_dir, tmp_path):
    cfg = make_cfg(dna_model_dir)
    with pytest.raises(ValueError, match="no attributions under"):
        faithfulness(str(tmp_path / "missing"), cfg)
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        faithfulness("gs://bucket/run", cfg)
    (tmp_path / "attributions").mkdir()
    shutil.copy(run_dir / "attributions" / "part-b.parquet", tmp_path / "attributions")
    with pytest.raises(ValueError, match="no row with status 'ok' in one window.*windowed"):
        faithfulness(str(tmp_path), cfg)


def test_misaligned_row_names_its_id(run_dir, dna_model_dir, tmp_path):
    table = pq.read_table(run_dir / "attributions" / "part-a.parquet").slice(0, 3)
    short = [v[:-1] for v in table["token_attr"].to_pylist()]
    index = table.column_names.index("token_attr")
    table = table.set_column(index, "token_attr", pa.array(short, pa.list_(pa.float32())))
    (tmp_path / "attributions").mkdir()
    pq.write_table(table, tmp_path / "attributions" / "part-a.parquet")
    with pytest.raises(ValueError, match=r"row id='dna-\d+': token_ids has"):
        faithfulness(str(tmp_path), make_cfg(dna_model_dir))
