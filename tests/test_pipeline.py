"""The Ray Data pipeline with real components: in-process Ray, a local S3 server (moto_server),
real transformers models and Captum. Every input row must end as exactly one output row."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.config import load
from raysattr.io.results import read_attributions
from raysattr.pipeline.plan import run

from .clusters import kill_tree
from .factories import dna_rows, save_random_bert
from .servers import apply_env, restore_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]

from raysattr.tokenize import build_kmer_vocab  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_bert(tmp_path_factory.mktemp("model"), build_kmer_vocab(3), max_positions=64)


def config(model_dir, data_uri, out_uri, *extra):
    return load(
        "configs/demo.yaml",
        [
            f"data.uri={data_uri}",
            f"model.path={model_dir}",
            f"output.uri={out_uri}",
            "tokenize.k=3",
            # Not about convergence (test_convergence, test_quadrature): Captum's fixed rule at
            # 4 steps is a third of the path rule's work per row.
            "attribution.quadrature=fixed",
            "attribution.n_steps=4",
            "attribution.adaptive_steps=false",
            "compute.rows_per_block=40",
            "compute.rows_per_call=40",
            # demo.yaml allows 2 actors; each one imports torch and loads the model (~6 CPU s),
            # which a test of a hundred rows on 2 cores does not need.
            "compute.max_actors=1",
            "data.passthrough_columns=[]",
            "qc.enabled=false",  # faithfulness and the report have tests of their own;
            "report.enabled=false",  # the S3 test turns them on
            *extra,
        ],
    )


def test_local_parquet_every_row_once_with_schema(ray_session, model_dir, tmp_path, monkeypatch):
    from ray.data._internal.stats import _StatsManager

    # The driver must not consume the run through Ray Data's batch iterator: it ships its
    # DatasetStats, which grows with the blocks of the run, through the object store every 5 s,
    # and the driver keeps every store page it writes (+48 MiB at 1M rows; plan._attribute).
    shipped = []
    monkeypatch.setattr(
        _StatsManager, "update_iteration_metrics", lambda *a, **k: shipped.append(a)
    )
    table = dna_rows(120)
    pq.write_table(table, tmp_path / "in.parquet")
    result = run(
        config(
            model_dir,
            tmp_path / "in.parquet",
            tmp_path / "out",
            "data.passthrough_columns=[batch_tag]",
        )
    )
    out = read_attributions(str(tmp_path / "out"))
    assert sorted(out.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert set(out.column("status").to_pylist()) == {"ok"}
    for col in (
        "id",
        "label",
        "pred",
        "probs",
        "target",
        "method",
        "n_tokens",
        "length",
        "bucket",
        "token_ids",
        "token_attr",
        "residue_attr",
        "attr_l2",
        "delta",
        "delta_rel",
        "n_steps",
        "truncated",
        "windows",
        "status",
        "error",
        "batch_tag",
        "run_id",
        "model_fingerprint",
    ):
        assert col in out.column_names, col
    lengths = out.column("length").to_pylist()
    assert [len(r) for r in out.column("residue_attr").to_pylist()] == lengths
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["ok"] == 120 and summary["rows"]["error"] == 0
    assert summary["inputs"][0]["size"] > 0 and summary["model_fingerprint"].startswith("sha256:")
    assert result.summary["sequences_per_s"] > 0
    # Length routing: every row counted in its bucket, padding measured, call columns not written
    buckets = {b["bucket"]: b["rows"] for b in summary["length_buckets"]}
    assert buckets == dict(zip(*np.unique(out.column("bucket"), return_counts=True), strict=True))
    assert 0 <= summary["padding_fraction"] < 0.5
    assert not any(c.startswith("_") for c in out.column_names)
    assert shipped == [], "the driver sent Ray Data's iteration stats through the object store"


def _write_formats(table: pa.Table, directory) -> dict:
    paths = {
        "csv": directory / "in.csv",
        "fasta": directory / "in.fasta",
        "jsonl": directory / "in.jsonl",
    }
    renamed = table.rename_columns(["id", "seq", "knotted?", "batch_tag"])
    import pyarrow.csv as pacsv

    pacsv.write_csv(renamed, paths["csv"], pacsv.WriteOptions(delimiter=";"))
    with open(paths["fasta"], "w") as fh:
        for row in table.to_pylist():
            seq = row["sequence"]
            fh.write(f">{row['id']} label={row['label']}\n")
            fh.write("\n".join(seq[i : i + 7] for i in range(0, len(seq), 7)) + "\n")
    with open(paths["jsonl"], "w") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row) + "\n")
    return paths


def test_csv_fasta_jsonl_give_the_same_rows(ray_session, model_dir, tmp_path):
    table = dna_rows(30, seed=1)
    paths = _write_formats(table, tmp_path)
    extra = {
        "csv": ["data.sequence_column=seq", "data.label_column=knotted?", "data.csv_delimiter=;"],
        "fasta": [],
        "jsonl": [],
    }
    outputs = {}
    for fmt, path in paths.items():
        run(
            config(
                model_dir, path, tmp_path / f"out-{fmt}", "attribution.method=saliency", *extra[fmt]
            )
        )
        out = read_attributions(str(tmp_path / f"out-{fmt}")).sort_by("id")
        outputs[fmt] = out
        assert out.column("id").to_pylist() == sorted(table.column("id").to_pylist())
        assert set(out.column("status").to_pylist()) == {"ok"}
    ref = outputs["jsonl"].column("residue_attr").to_pylist()
    for fmt in ("csv", "fasta"):
        assert (
            outputs[fmt].column("sequence").to_pylist()
            == outputs["jsonl"].column("sequence").to_pylist()
        )
        np.testing.assert_allclose(
            np.concatenate(outputs[fmt].column("residue_attr").to_pylist()),
            np.concatenate(ref),
            atol=1e-6,
        )
    assert (
        outputs["csv"].column("label").to_pylist() == outputs["jsonl"].column("label").to_pylist()
    )


def test_bad_rows_become_error_rows_never_dropped(ray_session, model_dir, tmp_path):
    good = "ACGTACGTACGTAGCTAGCATCGA"
    table = pa.table(
        {
            "id": ["ok", "empty", "weird", "n-rich", "long", "no-label", "none"],
            "sequence": [good, "", "ACGT€ACGT", "ACGNNNNACGT", "ACGT" * 40, good, None],
            "label": pa.array([1, 0, 1, 0, 1, None, 0], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "bad.parquet")
    run(
        config(
            model_dir,
            tmp_path / "bad.parquet",
            tmp_path / "out",
            "attribution.target=label",
            "tokenize.long_policy=error",
        )
    )
    out = read_attributions(str(tmp_path / "out"))
    status = dict(zip(out.column("id").to_pylist(), out.column("status").to_pylist(), strict=True))
    assert status == {
        "ok": "ok",
        "empty": "empty_sequence",
        "weird": "invalid_characters",
        "n-rich": "ok",
        "long": "too_long",
        "no-label": "invalid_target",
        "none": "missing_sequence",
    }
    errors = dict(zip(out.column("id").to_pylist(), out.column("error").to_pylist(), strict=True))
    assert "€" in errors["weird"] and "62" in errors["long"]


def test_fasta_with_non_utf8_bytes_gives_an_error_row(ray_session, model_dir, tmp_path):
    path = tmp_path / "bytes.fasta"
    path.write_bytes(b">a\nACGTACGTAC\nGTAC\n>b\nACG\xff\xfeACGT\n>c\nTTTTGGGGCCCA\n")
    run(config(model_dir, path, tmp_path / "out"))
    out = read_attributions(str(tmp_path / "out")).sort_by("id")
    assert out.column("status").to_pylist() == ["ok", "invalid_encoding", "ok"]
    assert "UTF-8" in out.column("error")[1].as_py()


@pytest.mark.parametrize("problem", ["missing_path", "missing_column", "corrupt_parquet"])
def test_run_level_errors_are_clear(ray_session, model_dir, tmp_path, problem):
    data = tmp_path / "in.parquet"
    if problem == "missing_column":
        pq.write_table(pa.table({"id": ["a"], "seq": ["ACGTACGT"]}), data)
        expected = "'sequence', 'label' not found.*columns present: id, seq"
    elif problem == "corrupt_parquet":
        data.write_bytes(b"PAR1 this is not parquet")
        expected = "cannot read it as parquet.*in.parquet"
    else:
        data = tmp_path / "nope.parquet"
        expected = "no such file"
    with pytest.raises((ValueError, FileNotFoundError), match=expected):
        run(config(model_dir, data, tmp_path / "out"))


def test_s3_in_and_out_and_unreadable_key(ray_session, s3, model_dir, tmp_path):
    table = dna_rows(50, seed=2)
    with s3.open("raysattr-test/in/part-0.parquet", "wb") as fh:
        pq.write_table(table, fh)
    result = run(
        config(
            model_dir,
            "s3://raysattr-test/in/",
            "s3://raysattr-test/out",
            "qc.enabled=true",
            "qc.sample_rows=10",
            "report.enabled=true",
        )
    )
    out = read_attributions("s3://raysattr-test/out")
    written = {p.rsplit("/", 1)[-1] for p in s3.ls("raysattr-test/out")}
    for name in (
        "summary.json",
        "position_stats.parquet",
        "motif_stats.parquet",
        "seqlets.parquet",
        "motifs.meme",
        "stats.json",
        "qc.parquet",
        "report.html",
    ):
        assert name in written, (name, written)
    assert result.summary["report"] == "s3://raysattr-test/out/report.html"
    assert result.summary["stats"]["rows"] == result.summary["rows"]["ok"]
    assert sorted(out.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert s3.exists("raysattr-test/out/summary.json")
    summary = json.loads(s3.cat("raysattr-test/out/summary.json"))
    assert "testing" not in json.dumps(summary)  # credentials are never written
    with pytest.raises(FileNotFoundError, match="s3://raysattr-test/missing.parquet"):
        run(config(model_dir, "s3://raysattr-test/missing.parquet", "s3://raysattr-test/o2"))


def test_resume_skips_done_ids_and_overwrite_starts_clean(ray_session, model_dir, tmp_path):
    first, second = dna_rows(40, seed=3), dna_rows(40, seed=4)
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(first, data / "a.parquet")
    out = tmp_path / "out"
    run(config(model_dir, data, out, "output.mode=resume"))
    pq.write_table(second, data / "b.parquet")
    result = run(config(model_dir, data, out, "output.mode=resume", "data.limit=30"))
    rows = result.summary["rows"]
    # a.parquet is all written (one carrier row counts it); b.parquet's last 10 are still to do.
    assert rows["skipped_done"] == 40 and rows["out"] == 30
    assert (rows["read"], rows["beyond_limit"], rows["input"]) == (30, 10, 80)
    ids = read_attributions(str(out)).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 70
    run(config(model_dir, data / "b.parquet", out, "output.mode=overwrite"))
    assert len(read_attributions(str(out)).column("id")) == 40


def test_killed_actor_is_restarted_with_nothing_lost(ray_session, model_dir, tmp_path):
    table = dna_rows(160, seed=5)
    pq.write_table(table, tmp_path / "in.parquet")
    marker = tmp_path / "crashed"
    previous = apply_env({"RAYSATTR_FAULT_EXIT_AT": "2", "RAYSATTR_FAULT_MARKER": str(marker)})
    try:
        # Two actors, as demo.yaml allows: one dies, the pool goes on and restarts it.
        run(config(model_dir, tmp_path / "in.parquet", tmp_path / "out", "compute.max_actors=2"))
    finally:
        restore_env(previous)
    assert marker.exists()  # the actor really died on its 2nd batch
    ids = read_attributions(str(tmp_path / "out")).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 160
    assert not os.environ.get("RAYSATTR_FAULT_EXIT_AT")


def test_driver_killed_mid_run_then_rerun_is_complete(ray_session, model_dir, tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    table = dna_rows(400, seed=6)
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = [
        f"data.uri={tmp_path / 'in.parquet'}",
        f"model.path={model_dir}",
        f"output.uri={out}",
        "tokenize.k=3",
        "attribution.quadrature=fixed",
        "attribution.n_steps=16",
        "attribution.adaptive_steps=false",
        "compute.rows_per_block=20",
        "compute.rows_per_call=20",
        "compute.max_actors=1",
        "data.passthrough_columns=[]",
        "output.mode=resume",
    ]
    cli = Path(sys.executable).parent / "raysattr"
    driver = subprocess.Popen(
        [str(cli), "run", "configs/demo.yaml", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "attributions").glob("part-*"))) < 2:
        assert driver.poll() is None, "the driver finished before it could be killed"
        time.sleep(0.2)
    # The driver and the Ray it started in-process, all at once: a write task left running
    # would finish after the count below. (One that finishes after the resumed run took the
    # lease is refused by the lease fence: tests/test_rundir.py.)
    kill_tree(driver.pid)
    driver.wait()
    written = len(read_attributions(str(out)).column("id"))
    assert 0 < written < 400
    result = run(config(model_dir, tmp_path / "in.parquet", out, "output.mode=resume"))
    rows = result.summary["rows"]
    assert rows["skipped_done"] == written and rows["beyond_limit"] == 0
    assert rows["out"] == rows["read"] == 400 - written  # recomputed: only what was missing
    ids = read_attributions(str(out)).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 400
