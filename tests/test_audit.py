"""Scheduled audits and their drift checks.

Through the real pipeline (in-process Ray): a baseline, an unchanged rerun (exit 0), an
incremental run over a same-distribution file (exit 0, statistics and totals of the whole
snapshot), and a snapshot whose planted motif changed (exit 3, the lost motif named).

Without Ray: the checks on statistics computed by the real statistics code from synthetic
attribution rows (a planted motif with high scores in positives, noise-level negatives):
unchanged, small samples, incremental (added rows = the new rows' own statistics) and graded real
changes; and the tests behind the checks against scipy and a published interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from raysattr.audit.drift import run_checks
from raysattr.audit.inference import fisher_p, proportions
from raysattr.audit.samples import Sample, Totals, added_rows, read_sample
from raysattr.audit.scheduled import merge_statistics, plan_files
from raysattr.cli import main
from raysattr.config import DriftThresholds, StatsConfig
from raysattr.demo.data import DatasetSpec, generate, write
from raysattr.io.rundir import RunDir
from raysattr.io.sources import InputFile
from raysattr.stats.passes import local_map
from raysattr.stats.run import compute_statistics, load_state
from tests.conftest import DNA_MOTIF

STATS = StatsConfig(kmer_sizes=[6, 8])


# --- synthetic attribution rows through the real statistics --------------------------------
def attributed(n: int, seed: int, destroyed=0.0, window=(10, 30), motif_score=0.5) -> pa.Table:
    """`n` attribution rows of 40-90 nt, half positives holding `DNA_MOTIF` inside `window`
    (except a `destroyed` fraction) whose residues score `motif_score` + N(0, 0.1); every other
    residue N(0, 0.01): the negatives are noise-level."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    seqs, scores = [], []
    for label in labels:
        length = int(rng.integers(40, 91))
        seq, score = rng.choice(list("ACGT"), length), rng.normal(0, 0.01, length)
        if label == 1 and rng.random() >= destroyed:
            start = int(rng.integers(window[0], window[1] - len(DNA_MOTIF) + 1))
            seq[start : start + len(DNA_MOTIF)] = list(DNA_MOTIF)
            score[start : start + len(DNA_MOTIF)] += motif_score + rng.normal(0, 0.1, 10)
        seqs.append("".join(seq))
        scores.append(score.astype(np.float32))
    return pa.table(
        {
            "id": [f"s{seed}-{i}" for i in range(n)],
            "label": labels,
            "pred": labels.astype(np.int32),
            "target": labels.astype(np.int32),
            "status": ["ok"] * n,
            "sequence": seqs,
            "residue_attr": pa.array(scores, pa.list_(pa.float32())),
        }
    )


def in_motif(name: str) -> bool:
    """A k-mer (`"<kmer>|class=<c>"`) of the planted motif, or of its edge: at most one flanking
    letter on a side."""
    kmer = name.split("|")[0]
    return any(kmer[a : len(kmer) - b] in DNA_MOTIF for a in (0, 1) for b in (0, 1))


def sample(root: Path, table: pa.Table) -> Sample:
    """The statistics of `table` (one part file under `root`) as a drift-check sample."""
    RunDir(str(root)).write_part(table)
    compute_statistics(str(root), STATS)
    return read_sample(str(root), Totals(table.num_rows, 0, []))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Path, Sample]:
    root = tmp_path_factory.mktemp("baseline")
    return root, sample(root, attributed(300, seed=1))


def check(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)


def test_unchanged_snapshot_every_check_reports_change_interval_p_and_threshold(baseline, tmp_path):
    result = run_checks(baseline[1], sample(tmp_path, attributed(300, seed=2)), 20, T)
    assert result["drift"] == [] and result["motifs_lost"] == []
    for c in result["checks"]:
        if c["name"] == "delta_shift":  # these rows carry no delta_rel
            assert c["change"] is None and c["passed"]
            continue
        low, high = c["interval"]
        assert low <= c["change"] <= high and 0 <= c["p_value"] <= 1, c
        assert c["threshold"] == pytest.approx(getattr(T, THRESHOLD_OF[c["name"]])), c
    # the noise-level class is left out of the position check instead of driving it
    assert "no signal (left out): label 0" in check(result, "position_profile")["detail"]
    assert check(result, "position_profile")["where"].startswith("label 1")


T = DriftThresholds()
THRESHOLD_OF = {
    "motif_support": "motif_support_change",
    "motif_seqlets": "motif_seqlet_change",
    "position_profile": "position_change",
    "prediction_shift": "pred_shift",
    "label_shift": "label_shift",
    "error_rate_increase": "error_rate_increase",
}


def test_small_samples_are_judged_against_their_own_noise():
    """The same shares (0.5 -> 0.3 of rows predicted 1, errors 0 -> 10 %) are noise at 20 rows
    and drift at 2,000."""

    def shares(n: int, positive: float, error: float) -> Sample:
        ones = round(n * positive)
        return Sample({"pred": {0: n - ones, 1: ones}, "label": {}}, {"label": {}, "pred": {}},
                      None, Totals(n, round(n * error), []))  # fmt: skip

    small = run_checks(shares(20, 0.5, 0), shares(20, 0.3, 0.1), 20, T)
    assert small["drift"] == []
    pred = check(small, "prediction_shift")
    assert pred["change"] == pytest.approx(-0.2) and pred["interval"][0] < -0.5
    assert pred["interval"][1] > 0 and pred["p_value"] > 0.3
    large = run_checks(shares(2000, 0.5, 0), shares(2000, 0.3, 0.1), 20, T)
    assert large["drift"] == ["prediction_shift", "error_rate_increase"]
    assert check(large, "prediction_shift")["p_value"] < 1e-30


def test_incremental_added_rows_are_the_new_rows_statistics(baseline, tmp_path):
    """Merged statistics minus the previous ones = the new rows' own statistics (at the
    previous seqlet threshold), and comparing them finds no drift."""
    root, before = baseline
    new = attributed(300, seed=3)
    merged = tmp_path / "merged"
    RunDir(str(merged)).write_part(new)
    stats = merge_statistics(str(merged), load_state(str(root)), local_map)
    assert stats["rows"] == 600
    now = read_sample(str(merged), before.totals + Totals(300, 0, []))
    added = added_rows(now, before)
    alone = tmp_path / "alone"
    RunDir(str(alone)).write_part(new)
    merge_statistics(str(alone), _empty_state(load_state(str(root))), local_map)
    direct = read_sample(str(alone), Totals(300, 0, []))
    assert added.classes == direct.classes and added.totals == direct.totals
    for c, profile in direct.profiles["label"].items():
        np.testing.assert_allclose(added.profiles["label"][c].mean, profile.mean, atol=1e-9)
        np.testing.assert_allclose(added.profiles["label"][c].var, profile.var, rtol=1e-6)
    key = ["k", "kmer", "class"]  # kmer: the canonical strand (motif names may differ)
    a = added.motifs.sort_by([(k, "ascending") for k in key])
    d = direct.motifs.sort_by([(k, "ascending") for k in key])
    for col in ("occurrences", "rows_with", "in_seqlets"):
        assert a[col].to_pylist() == d[col].to_pylist()
    assert run_checks(before, added, 20, T)["drift"] == []


def _empty_state(state):
    """`state` with nothing merged in: the new rows alone at the same threshold."""
    from raysattr.stats.passes import StatsState

    return StatsState(state.settings, state.threshold, None, None, [], state.version)


@pytest.mark.parametrize(
    ("change", "kwargs", "fired"),
    [
        ("motif destroyed in 30 % of positives", {"destroyed": 0.3}, "motif_support"),
        ("motif destroyed in all positives", {"destroyed": 1.0}, "motif_support"),
        ("the model no longer scores the motif", {"motif_score": 0.0}, "motif_seqlets"),
        ("motif window shifted", {"window": (30, 40)}, "position_profile"),
    ],
)
def test_real_changes_are_named(baseline, tmp_path, change, kwargs, fired):
    result = run_checks(baseline[1], sample(tmp_path, attributed(300, seed=4, **kwargs)), 20, T)
    assert fired in result["drift"], (change, result["drift"])
    named = check(result, fired)
    assert named["p_value"] < T.alpha and abs(named["change"]) >= named["threshold"]
    if fired.startswith("motif"):
        assert named["where"].split("|")[0] in DNA_MOTIF and named["change"] < 0
        assert all(in_motif(f["motif"]) for f in result["motif_changes"])
    else:
        assert named["where"].startswith("label 1")


def test_tests_against_scipy_and_newcombe():
    x1, n1, x2, n2 = [3, 40, 0, 7], [20, 300, 5, 1000], [9, 25, 4, 30], [20, 300, 6, 1000]
    ours = fisher_p(x1, n1, x2, n2, sides=1)
    for i in range(4):
        table = [[x2[i], n2[i] - x2[i]], [x1[i], n1[i] - x1[i]]]
        expected = scipy_stats.fisher_exact(table, alternative="greater").pvalue
        assert ours[i] == pytest.approx(expected, rel=1e-7)
    # Newcombe (1998), Stat Med 17:873, table II, 95 % method 10: 56/70 - 48/80, 9/10 - 3/10
    e, f = proportions(["a", "e"], [48, 3], [80, 10], [56, 9], [70, 10], alpha=0.05, tests=1)
    assert e.change == pytest.approx(0.2) and f.change == pytest.approx(0.6)
    assert (e.low, e.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert (f.low, f.high) == pytest.approx((0.1705, 0.8090), abs=1e-4)


def test_changed_or_removed_files_make_the_audit_full():
    before = [{"uri": "a", "size": 1, "version": "x"}, {"uri": "b", "size": 2, "version": "y"}]
    now = [InputFile("a", 1, "x"), InputFile("b", 2, "y"), InputFile("c", 3, "z")]
    files, reused, mode, _ = plan_files(now, before, incremental=True)
    assert mode == "incremental" and [f.uri for f in files] == ["c"] and reused == 2
    changed = [InputFile("a", 1, "x2"), InputFile("b", 2, "y")]
    assert plan_files(changed, before, incremental=True)[2] == "full"
    assert plan_files(now[:1], before, incremental=True)[2] == "full"  # b was removed
    assert plan_files(now, None, incremental=True)[2] == "full"


# --- the real pipeline --------------------------------------------------------------------
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
            "attribution.quadrature=fixed",
            "attribution.n_steps=8",
            "qc.sample_rows=20",
            "compute.rows_per_block=64",
            "compute.max_actors=1",  # audit.yaml allows 2: a second model load per audit
            *extra,
        ]
    )
    return code, json.loads((Path(root) / audit_id / "audit.json").read_text())


@pytest.mark.ray
def test_audits_baseline_unchanged_incremental_and_drift(
    ray_session, dna_model_dir, dna_table, snapshot, tmp_path, capsys
):
    root = tmp_path / "audits"
    code, first = audit(dna_model_dir, snapshot, root, "a1")
    assert code == 0 and first["status"] == "baseline" and first["rows_processed"] == 160
    assert first["snapshot"]["rows"] == 160
    assert (root / "a1" / "report.html").exists() and (root / "a1" / "qc.json").exists()

    code, same = audit(dna_model_dir, snapshot, root, "a2")
    assert same["previous"] == str(root / "a1")  # found as the latest audit
    assert code == 0 and same["status"] == "ok" and same["drift"] == []
    assert {c["name"] for c in same["checks"]} >= {"motif_support", "prediction_shift"}
    assert all(c["passed"] and abs(c["change"] or 0) < 1e-6 for c in same["checks"])
    assert same["top_motifs"][0].split("|")[0] in DNA_MOTIF

    write(dna_table.slice(160, 120), snapshot / "c.parquet", "parquet")  # same distribution
    capsys.readouterr()
    code, inc = audit(dna_model_dir, snapshot, root, "a3", "audit.incremental=true")
    assert inc["mode"] == "incremental" and inc["files_reused"] == 2
    assert [Path(f).name for f in inc["files_processed"]] == ["c.parquet"]
    assert inc["rows_processed"] == 120  # only the new file was attributed...
    stats = json.loads((root / "a3" / "stats.json").read_text())
    assert stats["rows"] == 280 and inc["snapshot"]["rows"] == 280  # ...the audit covers all
    assert "280 rows in the snapshot, 120 attributed now" in capsys.readouterr().out
    assert inc["comparison"] == "new rows vs previous snapshot"
    assert inc["rows_compared"] == {"before": 160, "after": 120}
    assert code == 0 and inc["status"] == "ok", [c for c in inc["checks"] if not c["passed"]]
    assert "audit" in (root / "a3" / "report.html").read_text()

    changed = generate(DatasetSpec("dna", 160, 40, 90, "GGCCTTAAGG", (10, 30), 0.5, seed=7))
    other = tmp_path / "changed"
    other.mkdir()
    write(changed, other / "a.parquet", "parquet")
    code, drift = audit(dna_model_dir, other, root, "a4", f"audit.previous={root / 'a2'}")
    assert code == 3 and drift["status"] == "drift"
    assert {"motif_support", "prediction_shift"} <= set(drift["drift"])
    lost = drift["motifs_lost"]
    assert lost and all(in_motif(m) for m in lost)  # the planted motif is named
    assert "GGCCTTAAGG" not in " ".join(drift["top_motifs"])  # the model never learned it
