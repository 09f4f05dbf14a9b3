"""Scheduled audits through the real pipeline (in-process Ray): a baseline, an unchanged rerun
(exit 0), an incremental run that processes only the new file, and a snapshot whose planted motif
changed (exit 3, the lost motif named)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysattr.audit.drift import spearman_of_ranks, total_variation
from raysattr.audit.scheduled import plan_files
from raysattr.cli import main
from raysattr.demo.data import DatasetSpec, generate, write
from raysattr.io.sources import InputFile
from tests.conftest import DNA_MOTIF

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def snapshot(dna_table, tmp_path_factory) -> Path:
    """Two files of the planted-motif DNA data (the third is added by the incremental test)."""
    root = tmp_path_factory.mktemp("snapshot")
    write(dna_table.slice(0, 80), root / "a.parquet", "parquet")
    write(dna_table.slice(80, 80), root / "b.parquet", "parquet")
    return root


def audit(model_dir, data, root, audit_id, *extra) -> tuple[int, dict]:
    code = main(
        [
            "audit",
            "configs/audit.yaml",
            f"data.uri={data}",
            f"model.path={model_dir}",
            f"audit.root={root}",
            f"audit.audit_id={audit_id}",
            "attribution.n_steps=8",
            "qc.sample_rows=20",
            "compute.rows_per_block=64",
            *extra,
        ]
    )
    return code, json.loads((Path(root) / audit_id / "audit.json").read_text())


def test_audits_baseline_unchanged_incremental_and_drift(
    ray_session, dna_model_dir, dna_table, snapshot, tmp_path
):
    root = tmp_path / "audits"
    code, first = audit(dna_model_dir, snapshot, root, "a1")
    assert code == 0 and first["status"] == "baseline" and first["rows_processed"] == 160
    assert (root / "a1" / "report.html").exists() and (root / "a1" / "qc.json").exists()

    code, same = audit(dna_model_dir, snapshot, root, "a2")
    assert same["previous"] == str(root / "a1")  # found as the latest audit
    assert code == 0 and same["status"] == "ok" and same["drift"] == []
    assert {c["name"] for c in same["checks"]} >= {"motif_jaccard", "prediction_shift"}
    assert all(c["passed"] for c in same["checks"])
    assert same["top_motifs"][0].split("|")[0] in DNA_MOTIF

    write(dna_table.slice(160, 60), snapshot / "c.parquet", "parquet")
    code, inc = audit(dna_model_dir, snapshot, root, "a3", "audit.incremental=true")
    assert inc["mode"] == "incremental" and inc["files_reused"] == 2
    assert [Path(f).name for f in inc["files_processed"]] == ["c.parquet"]
    assert inc["rows_processed"] == 60  # only the new file was attributed...
    stats = json.loads((root / "a3" / "stats.json").read_text())
    assert stats["rows"] == 220  # ...and its statistics merged with the previous 160 rows
    assert code in (0, 3) and inc["status"] in ("ok", "drift")

    changed = generate(DatasetSpec("dna", 160, 40, 90, "GGCCTTAAGG", (10, 30), 0.5, seed=7))
    other = tmp_path / "changed"
    other.mkdir()
    write(changed, other / "a.parquet", "parquet")
    code, drift = audit(dna_model_dir, other, root, "a4", f"audit.previous={root / 'a2'}")
    assert code == 3 and drift["status"] == "drift"
    assert "motif_jaccard" in drift["drift"]
    lost = [m.split("|")[0] for m in drift["motifs_lost"]]
    assert lost and all(m in DNA_MOTIF for m in lost)  # the planted motif is named
    assert "GGCCTTAAGG" not in " ".join(drift["top_motifs"])  # the model never learned it


def test_changed_or_removed_files_make_the_audit_full():
    before = [{"uri": "a", "size": 1, "version": "x"}, {"uri": "b", "size": 2, "version": "y"}]
    now = [InputFile("a", 1, "x"), InputFile("b", 2, "y"), InputFile("c", 3, "z")]
    files, reused, mode, _ = plan_files(now, before, incremental=True)
    assert mode == "incremental" and [f.uri for f in files] == ["c"] and reused == 2
    changed = [InputFile("a", 1, "x2"), InputFile("b", 2, "y")]
    assert plan_files(changed, before, incremental=True)[2] == "full"
    assert plan_files(now[:1], before, incremental=True)[2] == "full"  # b was removed
    assert plan_files(now, None, incremental=True)[2] == "full"


def test_drift_measures():
    assert total_variation({0: 50, 1: 50}, {0: 50, 1: 50}) == 0
    assert total_variation({0: 100}, {1: 100}) == 1
    assert spearman_of_ranks(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1)
    assert spearman_of_ranks(["a", "b", "c"], ["c", "b", "a"]) < 0
