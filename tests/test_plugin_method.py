"""Adding a method is one new file plus its registration: `tests/plugin_method.py` registers
`grad_l2` and nothing else in raysattr knows it. The engine builds it from
`attribution.method_modules`; a real run (Ray actors, statistics, faithfulness, report) uses it.

Ray workers import the module because Ray puts the driver's working directory on every worker's
`sys.path` (the repository root, where pytest runs); a cluster gets it from the job's
`working_dir` or `py_modules` (the hint of `registry.load_method_modules`'s error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch

from raysattr.attribution import AttributionEngine
from raysattr.config import AttributionConfig, load
from raysattr.io.results import read_attributions
from raysattr.pipeline.plan import run
from raysattr.tokenize import build_kmer_vocab, make_tokenizer

from .factories import dna_rows, random_dna_model, save_random_bert

MODULE = "tests.plugin_method"
PLUGIN_FILE = Path(__file__).with_name("plugin_method.py")


def test_the_engine_builds_a_method_registered_only_in_a_module(tmp_path):
    loaded = random_dna_model(tmp_path / "model", k=3, max_positions=48)
    tokenize = make_tokenizer("kmer", loaded.tokenizer, k=3)
    rows = [tokenize(s) for s in ("ACGTTGCAACGT", "TTGACCAGTACGGATCAA")]
    attribution = AttributionConfig(method="grad_l2", method_modules=[MODULE], n_steps=8)
    results = AttributionEngine(loaded, attribution).run(rows)
    sp = loaded.special_ids()
    for r, row in zip(results, rows, strict=True):
        assert r.ok, r.error
        assert r.n_steps == 0 and np.isnan(r.delta) and np.isnan(r.delta_rel)  # declared: none
        ids = torch.tensor([[sp["cls"], *row.content_ids.tolist(), sp["sep"]]])
        embeds = loaded.word_embeddings(ids).detach().requires_grad_(True)
        score = torch.softmax(loaded.model(inputs_embeds=embeds).logits, -1)[0, r.target]
        (grad,) = torch.autograd.grad(score, embeds)
        expected = grad[0].norm(dim=-1).numpy()
        np.testing.assert_allclose(r.token_attr, expected, rtol=1e-4, atol=1e-7)
        assert r.extras["grad_norm"] == pytest.approx(float(np.linalg.norm(expected)), rel=1e-4)


@ray.remote
def _plugin_file_seen_by_a_worker() -> str:
    import importlib

    return importlib.import_module(MODULE).__file__


@pytest.mark.ray
def test_a_plugin_method_runs_through_the_whole_pipeline(ray_session, tmp_path):
    # Workers find the module where the driver does (its working directory is on their path).
    try:
        seen = ray.get(_plugin_file_seen_by_a_worker.remote())
    except ray.exceptions.RayTaskError as exc:
        pytest.fail(
            f"Ray workers cannot import {MODULE}: run pytest from the repository root ({exc})"
        )
    assert Path(seen) == PLUGIN_FILE
    data = tmp_path / "dna.parquet"
    pq.write_table(dna_rows(24, seed=5), data)
    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3), max_positions=64)
    cfg = load(
        None,
        [
            f"data.uri={data}",
            f"model.path={model}",
            f"output.uri={tmp_path / 'out'}",
            "tokenize.k=3",
            "attribution.method=grad_l2",
            f"attribution.method_modules=[{MODULE}]",
            "stats.enabled=true",
            "qc.enabled=true",
            "report.enabled=true",
        ],
    )
    result = run(cfg)
    out = Path(result.output_uri)
    table = read_attributions(str(out))
    assert table.num_rows == 24
    assert set(table["status"].to_pylist()) == {"ok"}
    assert set(table["method"].to_pylist()) == {"grad_l2"}
    assert set(table["n_steps"].to_pylist()) == {0}
    assert all(v > 0 for v in table["extra_grad_norm"].to_pylist())
    for name in ("motif_stats.parquet", "position_stats.parquet"):
        assert pq.read_table(out / name).num_rows > 0, name
    assert json.loads((out / "qc.json").read_text())["n_rows"] == 24  # faithfulness ran
    assert "grad_l2 (24)" in (out / "report.html").read_text()  # the report's methods row
