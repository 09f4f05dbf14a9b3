"""Dataset statistics: exact merging of partials, the hypergeometric/BH arithmetic against scipy,
and ground truth — a planted motif ranks first, a negative control yields nothing significant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import false_discovery_control, hypergeom

from raysattr.config import StatsConfig
from raysattr.demo.data import DatasetSpec, generate, write
from raysattr.demo.train import TrainSpec, train_classifier
from raysattr.io.rundir import STATS_FILES
from raysattr.stats.accumulators import (
    ACCUMULATORS,
    STATE_VERSION,
    Accumulator,
    output_files,
    state_version,
)
from raysattr.stats.enrichment import bh_log_q, log_sf
from raysattr.stats.motifs import read_meme
from raysattr.stats.passes import StatsSettings, compute_state, first_pass, second_pass
from raysattr.stats.run import compute_statistics, finalize, load_state, save_state
from raysattr.stats.strands import reverse_complement
from tests.conftest import DNA_MOTIF, PROTEIN_MOTIF
from tests.factories import attribute_without_ray, part_of, write_motif_database


def synthetic_block(n_rows: int, seed: int, alphabet: str = "ACGTN") -> pa.Table:
    """Attribution-shaped rows with random letters and scores (some rows are error rows)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 60, n_rows)
    seqs = ["".join(rng.choice(list(alphabet), n)) for n in lengths]
    status = np.where(rng.random(n_rows) < 0.1, "too_short", "ok")
    return pa.table(
        {
            "id": [f"r{seed}-{i}" for i in range(n_rows)],
            "label": pa.array(
                [None if i % 7 == 0 else int(rng.integers(0, 2)) for i in range(n_rows)], pa.int64()
            ),
            "pred": pa.array(rng.integers(0, 2, n_rows), pa.int32()),
            "target": pa.array(rng.integers(0, 2, n_rows), pa.int32()),
            "status": status,
            "sequence": seqs,
            "residue_attr": pa.array(
                [rng.standard_normal(n).astype(np.float32) * rng.random() for n in lengths],
                pa.list_(pa.float32()),
            ),
            "extra_agree_last_cosine_raw": pa.array(rng.uniform(-1, 1, n_rows), pa.float32()),
        }
    )


@pytest.fixture(scope="module")
def settings() -> StatsSettings:
    cfg = StatsConfig(kmer_sizes=[2, 3, 5], max_seqlets=40, seqlet_min_length=2)
    return StatsSettings.from_config(cfg, "dna")


def _assert_first_equal(a, b):
    assert a.rows == b.rows
    assert np.array_equal(a.smoothed.counts, b.smoothed.counts)
    ta, tb = a.positions.table(), b.positions.table()
    assert ta.column_names == tb.column_names and ta.num_rows == tb.num_rows
    for name in ("group", "group_value", "axis", "index", "count"):
        assert ta.column(name).equals(tb.column(name)), name
    for name in ("mean", "std", "mean_abs", "top_decile_share"):
        np.testing.assert_allclose(
            ta.column(name).to_numpy(), tb.column(name).to_numpy(), rtol=1e-9, atol=1e-12
        )
    agree_a, agree_b = a.agreement.table(), b.agreement.table()
    assert agree_a.column("count").equals(agree_b.column("count"))
    assert agree_a.column("hist").equals(agree_b.column("hist"))


def _assert_second_equal(a, b):
    assert a.class_rows == b.class_rows and np.array_equal(a.letters, b.letters)
    for k, table in a.kmers.tables.items():
        other = b.kmers.tables[k]
        assert np.array_equal(table.keys, other.keys)
        for name, value in table.values.items():
            np.testing.assert_allclose(value, other.values[name], rtol=1e-9, atol=1e-12)
    assert a.seqlets.n_found == b.seqlets.n_found
    assert a.seqlets.table().equals(b.seqlets.table())


def test_merged_partials_equal_one_pass_in_any_order(settings):
    blocks = [synthetic_block(n, seed) for seed, n in enumerate([30, 55, 1, 40])]
    whole = pa.concat_tables(blocks)
    one_first = first_pass(whole, settings)
    threshold = one_first.smoothed.percentile(90)
    parts1 = [first_pass(b, settings) for b in blocks]
    parts2 = [second_pass(b, settings, threshold) for b in blocks]
    _assert_first_equal(one_first, ((parts1[0] + parts1[1]) + parts1[2]) + parts1[3])
    _assert_first_equal(one_first, parts1[3] + (parts1[2] + (parts1[1] + parts1[0])))
    one_second = second_pass(whole, settings, threshold)
    _assert_second_equal(one_second, (parts2[0] + parts2[1]) + (parts2[2] + parts2[3]))
    _assert_second_equal(one_second, parts2[2] + parts2[0] + parts2[3] + parts2[1])
    assert one_second.seqlets.n_found > settings.max_seqlets  # the top-k cut was exercised


def test_position_moments_match_numpy(settings):
    block = synthetic_block(60, 9)
    table = first_pass(block, settings).positions.table().to_pandas()
    ok = block.filter(pa.compute.equal(block.column("status"), "ok"))
    at5 = [r[5] for r in ok.column("residue_attr").to_pylist() if len(r) > 5]
    row = table[(table.group == "all") & (table.axis == "position") & (table["index"] == 5)]
    assert int(row["count"].iloc[0]) == len(at5)
    assert row["mean"].iloc[0] == pytest.approx(np.mean(at5), rel=1e-6)
    assert row["std"].iloc[0] == pytest.approx(np.std(at5), rel=1e-5)


# A statistic added by one table entry: the longest scored row (merges with max, in any order).
class _Longest(int):
    def __add__(self, other):
        return _Longest(max(self, other))


LONGEST = Accumulator(
    "longest",
    1,
    lambda b: _Longest(b.flat.lengths.max(initial=0)),
    outputs=lambda v, d: {"longest.json": {"residues": int(v)}},
    summary=lambda v, d: {"longest_row": int(v)},
    files=("longest.json",),
)


def test_the_state_version_follows_the_accumulator_table():
    assert state_version(list(ACCUMULATORS)) == STATE_VERSION  # unchanged list, same version
    assert state_version(ACCUMULATORS[::-1]) == STATE_VERSION  # order is not content
    assert state_version([*ACCUMULATORS, LONGEST]) != STATE_VERSION  # a new statistic
    bumped = [replace(a, version=a.version + 1) if a.name == "kmers" else a for a in ACCUMULATORS]
    assert state_version(bumped) != STATE_VERSION  # a partial that changed shape
    moved = [replace(a, pass_no=2) if a.name == "rows" else a for a in ACCUMULATORS]
    assert state_version(moved) != STATE_VERSION
    with pytest.raises(ValueError, match="unique"):
        state_version([*ACCUMULATORS, ACCUMULATORS[0]])


def test_the_stats_files_of_the_run_folder_are_the_tables_outputs():
    assert set(STATS_FILES) == {*output_files(ACCUMULATORS), "stats.json"}


def test_a_registered_accumulator_is_computed_merged_and_written(tmp_path, settings):
    (tmp_path / "attributions").mkdir()
    for seed, n in enumerate([30, 45]):
        pq.write_table(synthetic_block(n, seed), tmp_path / "attributions" / f"part-{seed}.parquet")
    table = [*ACCUMULATORS, LONGEST]
    state = compute_state(str(tmp_path), settings, accumulators=table)
    ok = [len(b) for seed, n in enumerate([30, 45]) for b in _ok_attrs(synthetic_block(n, seed))]
    assert state.first.longest == max(ok)
    outputs = finalize(state, table)
    assert outputs["longest.json"] == {"residues": max(ok)}
    assert outputs["stats.json"]["longest_row"] == max(ok)
    assert {*outputs} - {"longest.json"} == {*finalize(compute_state(str(tmp_path), settings))}
    save_state(str(tmp_path), state)
    assert load_state(str(tmp_path), table).first.longest == max(ok)
    assert load_state(str(tmp_path)) is None  # built by another table: a full audit instead
    with pytest.raises(ValueError, match="other accumulators"):
        finalize(state)


def _ok_attrs(block: pa.Table) -> list:
    ok = block.filter(pa.compute.equal(block.column("status"), "ok"))
    return ok.column("residue_attr").to_pylist()


def test_hypergeometric_tail_and_bh_match_scipy():
    rng = np.random.default_rng(0)
    N = rng.integers(1, 3000, 500)
    K = (rng.random(500) * N).astype(int)
    n = (rng.random(500) * N).astype(int)
    x = rng.integers(0, np.minimum(K, n) + 2)
    ours, ref = log_sf(x, N, K, n), hypergeom.logsf(x - 1, N, K, n)
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-8, atol=1e-10)
    assert np.array_equal(np.isinf(ours), np.isinf(ref))
    assert log_sf([3000], [200000], [3000], [10000])[0] == pytest.approx(
        hypergeom.logsf(2999, 200000, 3000, 10000), rel=1e-9
    )  # ~1e-4112: no underflow
    p = rng.random(80) ** 3
    np.testing.assert_allclose(np.exp(bh_log_q(np.log(p))), false_discovery_control(p), rtol=1e-12)


def _attribute(table: pa.Table, model_dir, out, *overrides) -> str:
    """Attributions of `table` (8 IG steps: enough for statistics, cheap on 2 cores)."""
    data = write(table, out / "data.parquet", "parquet")
    return attribute_without_ray(data, model_dir, out / "run", "attribution.n_steps=8", *overrides)


@pytest.fixture(scope="module")
def dna_run(dna_table, dna_model_dir, tmp_path_factory) -> str:
    return _attribute(dna_table.slice(0, 300), dna_model_dir, tmp_path_factory.mktemp("stats"))


def test_planted_dna_motif_ranks_first_and_position_profile_peaks_in_its_window(dna_run):
    stats = compute_statistics(dna_run, StatsConfig())
    motifs = pq.read_table(f"{dna_run}/motif_stats.parquet").to_pandas()
    top = motifs.iloc[0]
    assert top["motif"] in DNA_MOTIF and top["k"] >= 6, motifs.head()
    assert top["significant"] and top["class"] == 1 and top["q"] < 1e-10
    assert stats["top_motifs"][0] == top["motif"]
    pos = pq.read_table(f"{dna_run}/position_stats.parquet").to_pandas()
    profile = pos[(pos.group == "label") & (pos.group_value == 1) & (pos.axis == "position")]
    profile = profile[profile["count"] >= profile["count"].max() / 2]  # ends: few rows, noisy
    peak = int(profile.loc[profile["mean"].idxmax(), "index"])
    assert 10 <= peak < 30  # dna_spec plants the motif inside residues [10, 30)
    meme = read_meme(Path(f"{dna_run}/motifs.meme").read_text())
    assert meme and (meme[0]["consensus"] in DNA_MOTIF or DNA_MOTIF in meme[0]["consensus"])
    assert all(part_of(m["consensus"], DNA_MOTIF) for m in meme), meme  # nothing else reported
    assert meme[0]["pwm"].shape[1] == 4 and np.allclose(meme[0]["pwm"].sum(axis=1), 1)
    seqlets = pq.read_table(f"{dna_run}/seqlets.parquet").to_pandas()
    assert (seqlets["motif"] == 0).sum() == meme[0]["nsites"]
    seed = stats["motifs"][0]["seed"]
    mine = seqlets[seqlets["motif"] == 0]
    reads = [
        s if d == "+" else reverse_complement(s)
        for s, d in zip(mine.sequence, mine.strand, strict=True)
    ]
    holding = sum(seed in r for r in reads)  # the rest: shifted copies merged into it
    assert holding == len(reads) if not stats["motifs"][0]["merged"] else holding >= len(reads) / 2


def test_planted_protein_motif_is_found(protein_table, protein_model_dir, tmp_path):
    out = _attribute(protein_table, protein_model_dir, tmp_path, "tokenize.scheme=residue")
    compute_statistics(out, StatsConfig())
    motifs = pq.read_table(f"{out}/motif_stats.parquet").to_pandas()
    top = motifs.iloc[0]
    assert top["motif"] in PROTEIN_MOTIF and top["significant"], motifs.head()
    meme = read_meme(Path(f"{out}/motifs.meme").read_text())
    assert meme[0]["alphabet"] == "ACDEFGHIKLMNPQRSTVWY"
    assert all(part_of(m["consensus"], PROTEIN_MOTIF, False) for m in meme), meme


def test_negative_control_has_no_significant_motif(tmp_path):
    spec = DatasetSpec("dna", 400, 40, 90, None, None, 0.5, seed=3)
    table = generate(spec)
    train_classifier(table, tmp_path / "model", TrainSpec(scheme="kmer", k=6, epochs=4, seed=0))
    out = _attribute(table, tmp_path / "model", tmp_path)
    stats = compute_statistics(out, StatsConfig())
    motifs = pq.read_table(f"{out}/motif_stats.parquet").to_pandas()
    assert len(motifs) > 1000  # k-mers were counted and tested...
    assert not (motifs["q"] < 0.05).any() and stats["n_significant"] == 0  # ...none is a finding
    assert read_meme(Path(f"{out}/motifs.meme").read_text()) == []


def test_run_statistics_name_the_planted_motif_from_a_database(dna_run, tmp_path):
    """TOMTOM on a real run's motifs against a database built here: the planted motif's entry
    named in stats.json and in the report's motif table."""
    from raysattr.report.inputs import read_run_files
    from raysattr.report.stat_sections import motifs_section

    database = write_motif_database(tmp_path / "db.meme", DNA_MOTIF)
    stats = compute_statistics(dna_run, StatsConfig(motif_database=database))
    first = stats["motifs"][0]
    assert first["matches"][0]["id"] == "MA9999.1" and first["matches"][0]["q"] < 0.05, first
    assert all(x["id"] == "MA9999.1" for m in stats["motifs"] for x in m["matches"])
    html = motifs_section(read_run_files(dna_run)).body  # the report's motif table
    assert "MA9999.1 PLANTED_TF (q=" in html and first["consensus"] in html


def test_cli_aggregate_and_bad_input(dna_run, tmp_path, capsys):
    from raysattr.cli import main

    assert main(["aggregate", dna_run, "stats.kmer_sizes=[6]", "stats.alpha=0.01"]) == 0
    assert "significant k-mers" in capsys.readouterr().out
    assert set(pq.read_table(f"{dna_run}/motif_stats.parquet").column("k").to_pylist()) == {6}
    assert main(["aggregate", str(tmp_path)]) == 1
    assert "no attributions" in capsys.readouterr().err
    assert main(["aggregate", dna_run, "stats.alphabet=klingon"]) == 2
    capsys.readouterr()
    assert main(["aggregate", dna_run, f"stats.motif_database={tmp_path}/absent.meme"]) == 2
    err = capsys.readouterr().err  # one line, before any pass over the rows
    assert "motif database cannot be read" in err and len(err.strip().splitlines()) == 1
