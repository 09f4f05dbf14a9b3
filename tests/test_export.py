"""`raysattr export`: tfmodisco-lite inputs that `modisco motifs` turns into the planted motif,
seqlets as BED/FASTA on the genome, per-nucleotide bedGraph tracks, and one-line errors.

One LIG run of 300 planted-motif rows (the session's trained DNA model, coordinate columns in
the input) with its statistics is shared by the module (tfmodisco-lite reports no pattern of
fewer than 100 seqlets); a tiny `ism` run checks the hypothetical scores' path into the modisco
arrays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.cli import main
from raysattr.config import StatsConfig, load
from raysattr.demo.data import write
from raysattr.errors import ConfigError
from raysattr.io.results import read_attributions
from raysattr.stats.run import compute_statistics
from tests.conftest import DNA_MOTIF
from tests.factories import attribute_without_ray

COORDS = [
    "data.coordinates.chrom=chrom",
    "data.coordinates.start=pos",
    "data.coordinates.strand=strand",
]
MODISCO = Path(sys.executable).parent / "modisco"


def revcomp(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def with_coordinates(table: pa.Table) -> pa.Table:
    """chr1/chr2, rows in pairs at one start (so pairs overlap), every third row on minus."""
    n = table.num_rows
    return (
        table.append_column("chrom", pa.array([f"chr{i % 2 + 1}" for i in range(n)]))
        .append_column("pos", pa.array([1000 * (i // 4) for i in range(n)], pa.int64()))
        .append_column("strand", pa.array(["-" if i % 3 == 0 else "+" for i in range(n)]))
    )


@pytest.fixture(scope="module")
def lig_run(dna_table, dna_model_dir, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("export")
    data = write(with_coordinates(dna_table.slice(0, 300)), root / "data.parquet", "parquet")
    # The fixed 8-step rule: a tenth of the path rule's cost on this saturated model, and
    # enough for the statistics and for modisco.
    fixed = ["attribution.quadrature=fixed", "attribution.n_steps=8"]
    out = attribute_without_ray(data, dna_model_dir, root / "run", *fixed, *COORDS)
    compute_statistics(out, StatsConfig())
    return out


@pytest.fixture(scope="module")
def ism_run(dna_table, dna_model_dir, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("export_ism")
    data = write(dna_table.slice(0, 6), root / "data.parquet", "parquet")
    return attribute_without_ray(
        data, dna_model_dir, root / "run", "attribution.method=ism", "attribution.output=logit"
    )


def rows_by_id(run: str) -> dict[str, dict]:
    table = read_attributions(run)
    return {r["id"]: r for r in table.to_pylist() if r["status"] == "ok"}


def test_modisco_export_finds_the_planted_motif(lig_run, tmp_path, capsys):
    dest = tmp_path / "modisco"
    assert main(["export", "modisco", lig_run, str(dest), "--width", "40"]) == 0
    assert "modisco motifs -s" in capsys.readouterr().out
    ohe = np.load(dest / "ohe.npz")["arr_0"]
    attr = np.load(dest / "attr.npz")["arr_0"]
    seqlets = pq.read_table(f"{lig_run}/seqlets.parquet").to_pylist()
    assert ohe.shape == attr.shape == (len(seqlets), 4, 40) and len(seqlets) >= 20
    # Each window is the seqlet's row around its core's midpoint, scores on their own letter.
    rows = rows_by_id(lig_run)
    for w in (0, len(seqlets) - 1):
        s = seqlets[w]
        row, start = rows[s["id"]], (s["core_start"] + s["core_end"]) // 2 - 20
        for j in range(40):
            pos = start + j
            inside = 0 <= pos < len(row["sequence"])
            letter = row["sequence"][pos] if inside else None
            expected = np.array([float(letter == x) for x in "ACGT"])
            np.testing.assert_array_equal(ohe[w, :, j], expected)
            score = row["residue_attr"][pos] if inside else 0.0
            np.testing.assert_allclose(attr[w, :, j], expected * score, rtol=1e-6)
    # modisco itself on one cropped window per row (90 = the longest row, shorter ones padded):
    # seqlet-centred windows hold a motif in every window, which leaves tfmodisco-lite's
    # Laplace null too little background (40-wide: found on one run, nothing on the next).
    crop = tmp_path / "crop"
    assert (
        main(["export", "modisco", lig_run, str(crop), "--windows", "crop", "--width", "90"]) == 0
    )
    h5 = crop / "modisco_results.h5"
    args = ["-s", crop / "ohe.npz", "-a", crop / "attr.npz", "-n", "300", "-w", "90"]
    args += ["-z", "12", "-t", "20", "-f", "4", "-g", "5", "-o", h5]  # 12-nt cores, 2 Leiden runs
    subprocess.run([str(MODISCO), "motifs", *map(str, args)], check=True, capture_output=True)
    with h5py.File(h5) as f:
        patterns = [
            "".join("ACGT"[i] for i in f[group][name]["sequence"][:].argmax(axis=1))
            for group in f
            for name in f[group]
        ]
    assert patterns, "modisco found no pattern"
    # Every pattern modisco reports holds 8 letters of the motif, on one strand or the other.
    cores = {DNA_MOTIF[i : i + 8] for i in range(3)} | {
        revcomp(DNA_MOTIF)[i : i + 8] for i in range(3)
    }
    for pattern in patterns:
        assert any(core in pattern for core in cores), patterns


def test_modisco_export_uses_ism_hypothetical_scores(ism_run, tmp_path):
    """Cropped windows wider than the rows: zero-padded; the scores are ism's matrix."""
    dest = tmp_path / "m"
    assert (
        main(["export", "modisco", ism_run, str(dest), "--windows", "crop", "--width", "100"]) == 0
    )
    attr = np.load(dest / "attr.npz")["arr_0"]
    ohe = np.load(dest / "ohe.npz")["arr_0"]
    record = __import__("json").loads((dest / "modisco.json").read_text())
    assert record["windows"] == "crop" and record["scores"].startswith("ism hypothetical")
    table = read_attributions(ism_run).to_pylist()
    assert attr.shape == (len(table), 4, 100)
    ids = [line.split("\t")[0] for line in (dest / "windows.tsv").read_text().splitlines()[1:]]
    for w, row_id in enumerate(ids):
        row = next(r for r in table if r["id"] == row_id)
        n = len(row["sequence"])
        start = n // 2 - 50
        hyp = np.array(row["extra_hypothetical"], np.float32)  # [n, 4]
        assert hyp.shape == (n, 4)
        np.testing.assert_allclose(attr[w][:, -start : -start + n], hyp.T, rtol=1e-6)
        assert not attr[w][:, :-start].any() and not attr[w][:, -start + n :].any()
        # The residue there: its hypothetical score is its residue_attr.
        letters = ohe[w][:, -start : -start + n].argmax(axis=0)
        np.testing.assert_allclose(hyp[np.arange(n), letters], row["residue_attr"], rtol=1e-5)


def test_bed_and_fasta_place_seqlets(lig_run, dna_table, tmp_path):
    seqlets = pq.read_table(f"{lig_run}/seqlets.parquet").to_pylist()
    coords = {r["id"]: r for r in with_coordinates(dna_table.slice(0, 300)).to_pylist()}
    assert main(["export", "bed", lig_run, str(tmp_path / "g.bed"), *COORDS]) == 0
    lines = (tmp_path / "g.bed").read_text().splitlines()
    assert len(lines) == len(seqlets)
    for line, s in zip(lines, seqlets, strict=True):
        chrom, a, b, name, score, strand = line.split("\t")
        c = coords[s["id"]]
        n = len(c["sequence"])
        minus = c["strand"] == "-"
        expect = (
            (c["pos"] + n - s["end"], c["pos"] + n - s["start"])
            if minus
            else (
                c["pos"] + s["start"],
                c["pos"] + s["end"],
            )
        )
        assert (chrom, int(a), int(b)) == (c["chrom"], *expect)
        assert strand == ("-" if minus != (s.get("strand", "+") == "-") else "+")
        assert name.startswith(f"{s['id']}:{s['start']}-{s['end']}") and 0 <= int(score) <= 1000
    # Without coordinates: positions within the sequence, the id as chromosome.
    assert main(["export", "bed", lig_run, str(tmp_path / "s.bed")]) == 0
    first = (tmp_path / "s.bed").read_text().splitlines()[0].split("\t")
    assert first[:3] == [seqlets[0]["id"], str(seqlets[0]["start"]), str(seqlets[0]["end"])]
    assert main(["export", "fasta", lig_run, str(tmp_path / "s.fa")]) == 0
    fasta = (tmp_path / "s.fa").read_text().splitlines()
    assert len(fasta) == 2 * len(seqlets)
    for header, seq, s in zip(fasta[::2], fasta[1::2], seqlets, strict=True):
        assert header.startswith(f">{s['id']}:{s['start']}-{s['end']} class={s['class']}")
        assert seq == coords[s["id"]]["sequence"][s["start"] : s["end"]] == s["sequence"]


def test_bedgraph_tracks_mean_residue_scores_on_the_genome(lig_run, tmp_path):
    dest = tmp_path / "t.bedgraph"
    assert main(["export", "bedgraph", lig_run, str(dest), *COORDS]) == 0
    lines = dest.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    expected: dict[tuple[str, int], list[float]] = {}
    for row in rows_by_id(lig_run).values():
        n = len(row["sequence"])
        for i, value in enumerate(row["residue_attr"]):
            pos = row["pos"] + (n - 1 - i if row["strand"] == "-" else i)
            expected.setdefault((row["chrom"], pos), []).append(value)
    got = [line.split("\t") for line in lines[1:]]
    keys = [(c, int(a)) for c, a, _, _ in got]
    assert keys == sorted(expected)  # sorted by chromosome then position, each once
    assert all(int(b) == int(a) + 1 for _, a, b, _ in got)
    assert any(len(v) > 1 for v in expected.values())  # overlapping rows were averaged
    values = np.array([float(v) for *_, v in got])
    np.testing.assert_allclose(values, [np.mean(expected[k]) for k in keys], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["export", "bigwig", "{run}", "{tmp}/x"], 2, "unknown export kind 'bigwig'"),
        (["export", "bedgraph", "{run}", "{tmp}/x"], 2, "needs genome coordinates"),
        (["export", "bed", "{ism}", "{tmp}/x"], 1, "no seqlets.parquet"),
        (["export", "bed", "{tmp}/nothing", "{tmp}/x"], 1, "no such output folder"),
        (
            ["export", "bedgraph", "{run}", "{tmp}/x", *COORDS[:1], "data.coordinates.start=pos2"],
            2,
            "coordinate column 'pos2' is not in the output",
        ),
        (["export", "modisco", "{run}", "{tmp}/x", "--windows", "all"], 2, "--windows 'all'"),
    ],
)
def test_bad_export_is_one_error_line(lig_run, ism_run, tmp_path, capsys, argv, code, words):
    argv = [a.format(run=lig_run, ism=ism_run, tmp=tmp_path) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_coordinates_config_needs_chrom_and_start():
    with pytest.raises(ConfigError, match="needs both chrom and start"):
        load(None, ["data.coordinates.chrom=chrom"])
    cfg = load(None, ["data.passthrough_columns=[chrom]", *COORDS])
    assert cfg.data.carried_columns() == ["chrom", "pos", "strand"]
