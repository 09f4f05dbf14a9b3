"""Length routing without Ray: windows sorted by length, one engine call per length bucket with
its cost columns, per-bucket totals in the run summary, and the output-location check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.config import load
from raysattr.errors import ConfigError
from raysattr.pipeline.resources import check_output_shared
from raysattr.pipeline.stages import (
    CALL_COLUMNS,
    AttributeStage,
    TokenizeStage,
    WriteStage,
    bucket_groups,
    sort_window,
)
from raysattr.pipeline.summary import BucketTotals, RunSummary
from raysattr.report.sections import length_buckets
from raysattr.tokenize import build_protein_vocab

from .factories import save_random_bert


@pytest.fixture(scope="module")
def protein_cfg(tmp_path_factory):
    model = save_random_bert(
        tmp_path_factory.mktemp("residue_model"), build_protein_vocab(), max_positions=300
    )
    return load(
        None,
        [
            f"model.path={model}",
            "tokenize.scheme=residue",
            "attribution.method=saliency",
            "data.label_column=null",
        ],
    )


def mixed_lengths(n: int = 40, seed: int = 0) -> pa.Table:
    """`n` random proteins of 5-250 residues, in random length order (with one error row)."""
    rng = np.random.default_rng(seed)
    seqs = [
        "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), rng.integers(5, 250))) for _ in range(n)
    ]
    errors = [None] * n
    errors[3] = "cannot decode"
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "sequence": seqs,
            "read_error": errors,
            "read_code": [None if e is None else "invalid_encoding" for e in errors],
        }
    )


def test_sort_window_orders_by_length_and_groups_split_at_buckets(protein_cfg):
    tokens = sort_window(TokenizeStage(protein_cfg)(mixed_lengths()))
    n = tokens.column("n_tokens").to_numpy()
    assert (np.diff(n) >= 0).all()
    groups = bucket_groups(tokens)
    buckets = tokens.column("bucket").to_numpy()
    assert sum(len(g) for g in groups) == tokens.num_rows
    assert all(len(set(buckets[g])) == 1 for g in groups)
    assert [buckets[g[0]] for g in groups] == sorted(set(buckets))


def test_attribute_stage_calls_the_engine_once_per_bucket_and_the_summary_adds_up(
    protein_cfg, tmp_path
):
    tokens = TokenizeStage(protein_cfg)(mixed_lengths())  # unsorted: the stage groups itself
    stage = AttributeStage(protein_cfg, run_id="t")
    out = stage(tokens)
    assert sorted(out.column("id").to_pylist()) == sorted(tokens.column("id").to_pylist())
    # One engine call per bucket: every row of a bucket carries the same share of one call.
    for bucket in set(out.column("bucket").to_pylist()):
        rows = np.asarray(out.column("bucket")) == bucket
        seconds = np.asarray(out.column("_engine_s"))[rows]
        assert np.allclose(seconds, seconds[0])
    evaluated = np.asarray(out.column("_tokens_evaluated")).sum()
    assert evaluated == pytest.approx(stage.engine.tokens_evaluated)

    written = WriteStage(str(tmp_path / "out"))(out)
    part = pq.read_table(next((tmp_path / "out" / "attributions").glob("*.parquet")))
    assert not set(CALL_COLUMNS) & set(part.column_names)

    summary = RunSummary()
    summary.add(written)
    buckets = summary.buckets.summary()
    assert sum(b["rows"] for b in buckets["length_buckets"]) == out.num_rows
    padding = stage.engine.tokens_padding / stage.engine.tokens_evaluated
    assert buckets["padding_fraction"] == pytest.approx(padding)
    assert all(b["rows_per_s"] > 0 for b in buckets["length_buckets"] if b["engine_s"] > 0)


def test_local_output_on_several_nodes_is_refused_unless_shared():
    nodes = [{"Alive": True}, {"Alive": True}, {"Alive": False}]
    local = load(None, ["output.uri=/data/out"]).output
    with pytest.raises(ConfigError, match="2 nodes.*output.shared_filesystem=true"):
        check_output_shared(local, nodes)
    check_output_shared(local, nodes[:1])  # one node: its own disk is the output
    check_output_shared(load(None, ["output.uri=s3://b/out"]).output, nodes)
    shared = load(None, ["output.uri=/mnt/efs/out", "output.shared_filesystem=true"]).output
    check_output_shared(shared, nodes)


def test_report_shows_the_length_buckets():
    buckets = BucketTotals()
    buckets.add(
        pa.table(
            {
                "bucket": pa.array([32, 32, 256], pa.int32()),
                "_engine_s": [0.5, 0.5, 4.0],
                "_tokens_evaluated": [100.0, 100.0, 900.0],
                "_tokens_padding": [10.0, 10.0, 0.0],
            }
        )
    )
    totals = buckets.summary()
    assert totals["padding_fraction"] == pytest.approx(20 / 1100)
    assert [(b["bucket"], b["rows"], b["rows_per_s"]) for b in totals["length_buckets"]] == [
        (32, 2, 2.0),
        (256, 1, 0.25),
    ]
    html = length_buckets(totals)
    assert "Length buckets" in html and "0.0182" in html and ">256<" in html
