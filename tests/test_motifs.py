"""Motif-level precision, both DNA strands and database names (TOMTOM via memelite).

Most checks run the statistics directly on synthetic attribution tables (rows as the pipeline
writes them, a planted motif scored high, random hot spots elsewhere), no Ray and no model; the
end-to-end checks reuse `tests/test_stats.py`'s attributed run of the trained DNA model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.config import StatsConfig
from raysattr.errors import ConfigError
from raysattr.stats.database import Database, annotate, check_database
from raysattr.stats.discovery import discover
from raysattr.stats.flat import flatten
from raysattr.stats.kmers import KmerCounts
from raysattr.stats.motifs import Motif, read_meme, similarity
from raysattr.stats.passes import compute_state
from raysattr.stats.run import finalize
from raysattr.stats.settings import StatsSettings
from raysattr.stats.strands import reverse_complement, reverse_complement_pwm
from tests.conftest import DNA_MOTIF
from tests.factories import part_of, write_motif_database

PLANTED = "GATTACAG"  # an 8-mer (as in the issue) that shares no 3-mer with its reverse complement


def planted_rows(
    n_rows: int, seed: int, motif: str = PLANTED, reverse_share: float = 0.0, decoys: int = 2
) -> pa.Table:
    """Attribution rows of 60-100 nt: label 1 rows hold `motif` (a `reverse_share` of them as
    its reverse complement) with scores ~1 on it; every row has `decoys` random hot spots of
    6 nt (scores ~0.8) and noise elsewhere, so seqlets also fall on random sequence."""
    rng = np.random.default_rng(seed)
    seqs, attrs, labels = [], [], []
    for i in range(n_rows):
        n = int(rng.integers(60, 101))
        letters = rng.choice(list("ACGT"), n)
        scores = rng.normal(0, 0.05, n)
        label = i % 2
        if label:
            at = int(rng.integers(0, n - len(motif)))
            site = reverse_complement(motif) if rng.random() < reverse_share else motif
            letters[at : at + len(motif)] = list(site)
            scores[at : at + len(motif)] += 1.0
        for _ in range(decoys):
            at = int(rng.integers(0, n - 6))
            scores[at : at + 6] += 0.8
        seqs.append("".join(letters))
        attrs.append(scores.astype(np.float32))
        labels.append(label)
    return pa.table(
        {
            "id": [f"r{seed}-{i}" for i in range(n_rows)],
            "label": pa.array(labels, pa.int64()),
            "pred": pa.array(labels, pa.int32()),
            "target": pa.array(labels, pa.int32()),
            "status": ["ok"] * n_rows,
            "sequence": seqs,
            "residue_attr": pa.array(attrs, pa.list_(pa.float32())),
        }
    )


def _settings(**overrides) -> StatsSettings:
    cfg = StatsConfig(kmer_sizes=[5, 6, 8], **overrides)
    return StatsSettings.from_config(cfg, "dna")


def _statistics(tmp_path: Path, tables: list[pa.Table], **overrides) -> dict:
    """finalize(compute_state(...)) over part files written from `tables` (no Ray)."""
    (tmp_path / "attributions").mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tables):
        pq.write_table(t, tmp_path / "attributions" / f"part-{i}.parquet")
    return finalize(compute_state(str(tmp_path), _settings(**overrides)))


def test_both_strands_count_a_kmer_and_its_reverse_complement_as_one():
    flat = flatten(planted_rows(40, 0, reverse_share=0.75))
    covered = np.zeros(len(flat.scores), bool)
    one = KmerCounts.of(flat, "dna", [8], covered)
    both = KmerCounts.of(flat, "dna", [8], covered, both_strands=True)
    classes1, names1 = one.decode(8)
    classes2, names2 = both.decode(8)
    occ1 = dict(zip(zip(classes1, names1, strict=True), one.tables[8].values["occurrences"],
                    strict=True))  # fmt: skip
    occ2 = dict(zip(zip(classes2, names2, strict=True), both.tables[8].values["occurrences"],
                    strict=True))  # fmt: skip
    rc = reverse_complement(PLANTED)
    assert occ1[(1, PLANTED)] + occ1[(1, rc)] == occ2[(1, rc)] == 20  # named as read mostly
    assert (1, PLANTED) not in occ2
    # every window counted once: totals per class are unchanged
    assert sum(occ1.values()) == sum(occ2.values())
    assert (one + one).tables[8].values["occurrences"].sum() == 2 * sum(occ1.values())
    with pytest.raises(ValueError, match="both strands"):
        one + both


def test_planted_motif_on_both_strands_is_one_motif_with_stranded_seqlets(tmp_path):
    tables = [planted_rows(150, s, reverse_share=0.5) for s in (1, 2)]
    out = _statistics(tmp_path / "both", tables)
    motifs = read_meme(out["motifs.meme"])
    assert len(motifs) == 1 and part_of(motifs[0]["consensus"], PLANTED)
    seqlets = out["seqlets.parquet"].to_pandas()
    mine = seqlets[seqlets["motif"] == 0]
    assert len(mine) == motifs[0]["nsites"] >= 120  # of 150 planted sites
    assert set(mine["strand"]) == {"+", "-"} and set(seqlets[seqlets.motif < 0].strand) <= {"."}
    for _, s in mine.iterrows():  # the strand says how the motif reads in the seqlet
        read = s["sequence"] if s["strand"] == "+" else reverse_complement(s["sequence"])
        assert out["stats.json"]["motifs"][0]["seed"] in read
    one_strand = _statistics(tmp_path / "one", tables, both_strands=False)
    consensi = [m["consensus"] for m in read_meme(one_strand["motifs.meme"])]
    assert len(consensi) == 2  # the same motif twice, once per strand
    assert any(part_of(c, PLANTED, False) for c in consensi)
    assert any(part_of(c, reverse_complement(PLANTED), False) for c in consensi)


def _seqlet_cols(sequences: list[str], classes: list[int]) -> dict:
    n = len(sequences)
    return {
        "ids": np.array([f"s{i}" for i in range(n)], dtype=object),
        "classes": np.array(classes, np.int64),
        "sequence": np.array(sequences, dtype=object),
    }


def _seeds(pairs: list[tuple[str, int]], others: list[str]) -> pa.Table:
    """motif_stats-like rows: `pairs` significant (seeds, in rank order), then `others` tested
    but not significant (they count as hypotheses of the motif test)."""
    return pa.table(
        {
            "motif": [m for m, _ in pairs] + others,
            "class": pa.array([c for _, c in pairs] + [1] * len(others), pa.int64()),
            "log10_p": [-10.0] * len(pairs) + [0.0] * len(others),
            "significant": [True] * len(pairs) + [False] * len(others),
        }
    )


def test_background_seeds_and_shifted_copies_are_not_reported():
    """The issue's failure: seeds that pass the k-mer tests but whose seqlets are chance
    (13 background motifs of 10-21 sites against 1,500): the motif test drops them; a copy of
    the planted motif with one letter changed is merged into it."""
    rng = np.random.default_rng(4)

    def random_seq(n: int) -> str:
        return "".join(rng.choice(list("ACGT"), n))

    sites = [random_seq(6) + PLANTED + random_seq(6) for _ in range(300)]
    variant = PLANTED[:4] + "C" + PLANTED[5:]
    copies = [random_seq(4) + variant + random_seq(8) for _ in range(20)]
    background = [random_seq(20) for _ in range(1200)]
    sequences = sites + copies + background
    st = _settings(top_motifs=20)
    # every 5-mer that chance put into >= 10 background seqlets, as a (false) k-mer finding
    counts: dict[str, int] = {}
    for s in background:
        for kmer in {s[i : i + 5] for i in range(16)}:
            counts[kmer] = counts.get(kmer, 0) + 1
    chance = sorted(k for k, n in counts.items() if n >= 10 and not part_of(k, PLANTED))[:40]
    assert len(chance) >= 20
    seeds = _seeds([(PLANTED, 1), (variant, 1), *[(k, 1) for k in chance]], sorted(counts))
    found = discover(_seqlet_cols(sequences, [1] * len(sequences)), seeds, st)
    assert [m.seed for m in found.motifs] == [PLANTED]
    motif = found.motifs[0]
    assert motif.nsites == 320 and motif.merged == [variant]  # the copy joined the motif
    assert motif.log10_q < -50
    assert {r["reason"] for r in found.rejected} == {"shuffled"}
    assert len(found.rejected) >= 15  # chance seeds were tested, and failed
    assert (found.motif_of[:320] == 0).all() and (found.motif_of[320:] == -1).all()
    # a support share floor drops a motif even when it beats its shuffles
    strict = discover(_seqlet_cols(sequences, [1] * len(sequences)), seeds,
                      _settings(min_motif_share=0.5))  # fmt: skip
    assert strict.motifs == [] and strict.rejected[0]["reason"] == "share"


def test_random_labels_report_no_motif(tmp_path):
    table = planted_rows(300, 5, decoys=3)
    rng = np.random.default_rng(0)
    labels = pa.array(rng.permutation(table.column("label").to_numpy()), pa.int64())
    shuffled = table.set_column(1, "label", labels).set_column(2, "pred", labels.cast(pa.int32()))
    out = _statistics(tmp_path, [shuffled])
    assert read_meme(out["motifs.meme"]) == [] and out["stats.json"]["motifs"] == []
    assert out["stats.json"]["n_significant"] == 0


def test_similarity_finds_shifted_and_reverse_copies():
    pwm = _one_hot(DNA_MOTIF)
    score, offset, strand = similarity(pwm, _one_hot(DNA_MOTIF[3:8]), True)
    assert (score, offset, strand) == (pytest.approx(1.0, abs=0.05), 3, 1)
    score, offset, strand = similarity(pwm, _one_hot(reverse_complement(DNA_MOTIF[2:9])), True)
    assert score == pytest.approx(1.0, abs=0.05) and strand == -1 and offset == 2
    assert similarity(pwm, _one_hot("GGGCCAGGT"), True)[0] < 0.6
    assert np.allclose(reverse_complement_pwm(reverse_complement_pwm(pwm)), pwm)


def _one_hot(seq: str, noise: float = 0.02) -> np.ndarray:
    pwm = np.full((len(seq), 4), noise)
    pwm[np.arange(len(seq)), ["ACGT".index(c) for c in seq]] = 1 - 3 * noise
    return pwm


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    return write_motif_database(tmp_path_factory.mktemp("db") / "db.meme", DNA_MOTIF)


def test_tomtom_names_the_planted_motif_and_not_shuffled_ones(database):
    db = Database.load(database, "dna")
    assert len(db.ids) == 41 and db.names[17] == "PLANTED_TF"
    rng = np.random.default_rng(2)
    queries = [
        Motif("planted", "", "", 1, _one_hot(DNA_MOTIF[1:9], 0.08), 100, 0.0),
        Motif("rc", "", "", 1, _one_hot(reverse_complement(DNA_MOTIF), 0.08), 100, 0.0),
    ]
    for i in range(6):  # the planted motif's columns in a random order: same letters, no motif
        order = rng.permutation(len(DNA_MOTIF))
        queries.append(Motif(f"shuffled{i}", "", "", 1, _one_hot(DNA_MOTIF, 0.08)[order], 9, 0.0))
    annotate(queries, db, both_strands=True, max_matches=3, alpha=0.05)
    best = queries[0].matches[0]
    assert best["id"] == "MA9999.1" and best["name"] == "PLANTED_TF" and best["q"] < 0.01
    assert best["strand"] == "+" and best["p"] <= best["q"]
    assert queries[1].matches[0]["id"] == "MA9999.1" and queries[1].matches[0]["strand"] == "-"
    assert all(q.matches == [] or q.matches[0]["id"] != "MA9999.1" for q in queries[2:])
    assert sum(len(q.matches) for q in queries[2:]) <= 1  # at most one chance match at q < 0.05


def test_motif_database_errors_are_config_errors(database, tmp_path):
    check_database(database, "dna")
    check_database(None, "dna")
    with pytest.raises(ConfigError, match="stats.motif_database.*protein"):
        check_database(database, "protein")
    with pytest.raises(ConfigError, match="cannot be read"):
        check_database(str(tmp_path / "absent.meme"), "dna")
    (tmp_path / "empty.meme").write_text("MEME version 4\n")
    with pytest.raises(ConfigError, match="no MOTIF"):
        check_database(str(tmp_path / "empty.meme"), "dna")
