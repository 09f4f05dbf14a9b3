"""The embedded demo: planted-motif datasets, their files, and the tiny classifier trainer."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from raysattr.config import ModelConfig
from raysattr.demo import build_demo
from raysattr.demo.data import (
    FASTA_WIDTH,
    DatasetSpec,
    demo_dna_spec,
    demo_protein_spec,
    generate,
    write,
)
from raysattr.demo.train import (
    METRICS_FILE,
    TrainSpec,
    collate,
    dataset_hash,
    demo_train_spec,
    predict,
    save_tokenizer,
    train_classifier,
)
from raysattr.models import load_model
from raysattr.tokenize import make_tokenizer


def parse_fasta(text: str) -> list[dict]:
    """Multi-line FASTA records `>ID key=value ...` into `{id, sequence, key: int}` dicts."""
    records: list[dict] = []
    for line in text.splitlines():
        if line.startswith(">"):
            name, *fields = line[1:].split()
            extra = {k: int(v) for k, v in (f.split("=", 1) for f in fields)}
            records.append({"id": name, "sequence": "", **extra})
        elif line.strip():
            records[-1]["sequence"] += line.strip()
    return records


def _rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


# --- data -------------------------------------------------------------------------------------


def test_generate_is_deterministic_for_a_seed(dna_spec: DatasetSpec) -> None:
    first, again = generate(dna_spec), generate(dna_spec)
    assert first.equals(again)
    other = generate(dataclasses.replace(dna_spec, seed=dna_spec.seed + 1))
    assert first["sequence"].to_pylist() != other["sequence"].to_pylist()


def test_schema_lengths_and_class_balance(dna_spec: DatasetSpec, dna_table: pa.Table) -> None:
    assert dna_table.schema == pa.schema(
        [
            ("id", pa.string()),
            ("sequence", pa.string()),
            ("label", pa.int64()),
            ("motif_start", pa.int64()),
        ]
    )
    assert dna_table["id"][0].as_py() == "dna-000001"
    assert len(set(dna_table["id"].to_pylist())) == dna_spec.n_rows
    lengths = np.array([len(s) for s in dna_table["sequence"].to_pylist()])
    assert lengths.min() >= dna_spec.min_length and lengths.max() <= dna_spec.max_length
    assert dna_table["label"].to_numpy().sum() == dna_spec.n_rows // 2
    assert set("".join(dna_table["sequence"].to_pylist())) == set("ACGT")


@pytest.mark.parametrize("table_name", ["dna_table", "protein_table"])
def test_negatives_never_contain_the_motif(table_name: str, request: pytest.FixtureRequest) -> None:
    table = request.getfixturevalue(table_name)
    spec = request.getfixturevalue(table_name.replace("_table", "_spec"))
    for row in _rows(table):
        if row["label"] == 0:
            assert spec.motif not in row["sequence"], row["id"]
            assert row["motif_start"] == -1


def test_short_motif_is_redrawn_out_of_negatives() -> None:
    # A 5-mer turns up by chance in ~10 % of 80-nt rows; all of those must be redrawn.
    spec = DatasetSpec("dna", 3000, 60, 100, "GATCA", None, 0.5, seed=3)
    for row in _rows(generate(spec)):
        count = sum(row["sequence"].startswith("GATCA", i) for i in range(len(row["sequence"])))
        assert count == (1 if row["label"] == 1 else 0), row["id"]


@pytest.mark.parametrize("table_name", ["dna_table", "protein_table"])
def test_planted_motif_lies_inside_its_window(
    table_name: str, request: pytest.FixtureRequest
) -> None:
    table = request.getfixturevalue(table_name)
    spec = request.getfixturevalue(table_name.replace("_table", "_spec"))
    lo, hi = spec.motif_window
    starts = []
    for row in _rows(table):
        if row["label"] == 1:
            start = row["motif_start"]
            assert lo <= start and start + len(spec.motif) <= hi, row["id"]
            assert row["sequence"][start : start + len(spec.motif)] == spec.motif
            assert row["sequence"].count(spec.motif) == 1
            starts.append(start)
    assert len(set(starts)) == hi - lo - len(spec.motif) + 1  # every allowed start is used


def test_motif_anywhere_when_no_window() -> None:
    spec = DatasetSpec("protein", 500, 20, 40, "WHCKYM", None, 0.3, seed=0)
    table = generate(spec)
    for row in _rows(table):
        if row["label"] == 1:
            assert 0 <= row["motif_start"] <= len(row["sequence"]) - 6
    assert table["label"].to_numpy().sum() == 150


def test_negative_controls_have_no_class_linked_motif() -> None:
    none = generate(DatasetSpec("dna", 400, 50, 60, None, seed=2))
    assert (none["motif_start"].to_numpy() == -1).all()
    assert none["label"].to_numpy().sum() == 200
    everywhere = generate(
        DatasetSpec("dna", 400, 50, 60, "TATAATGCGC", (5, 25), seed=2, plant_in_negatives=True)
    )
    for row in _rows(everywhere):
        assert 5 <= row["motif_start"] <= 15
        assert row["sequence"].count("TATAATGCGC") == 1
    assert everywhere["label"].to_numpy().sum() == 200


def test_generates_100k_rows_quickly() -> None:
    started = time.perf_counter()
    table = generate(dataclasses.replace(demo_dna_spec(), n_rows=100_000))
    assert table.num_rows == 100_000
    assert time.perf_counter() - started < 10.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alphabet": "rna"}, "alphabet='rna'"),
        ({"n_rows": 0}, "n_rows=0"),
        ({"min_length": 0}, "min_length=0"),
        ({"max_length": 10}, "max_length=10"),
        ({"positive_fraction": 1.5}, "positive_fraction=1.5"),
        ({"motif": "ACGTN"}, "motif='ACGTN'"),
        ({"motif": ""}, "motif=''"),
        ({"motif": "ACGT" * 30}, "longer than min_length=80"),
        ({"motif_window": (70, 90)}, r"motif_window=\(70, 90\)"),
        ({"motif_window": (-1, 20)}, r"motif_window=\(-1, 20\)"),
        ({"motif_window": (30, 35)}, "narrower than the motif"),
        ({"motif": None, "motif_window": (30, 50)}, "motif=None"),
        ({"motif": "A", "motif_window": None}, "too short or common"),
    ],
)
def test_bad_specs_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(dataclasses.replace(demo_dna_spec(), **changes))


def test_protein_alphabet_rejects_dna_only_letters() -> None:
    with pytest.raises(ValueError, match="offending letters: \\['B'\\]"):
        generate(dataclasses.replace(demo_protein_spec(), motif="WHCKYB"))


# --- files ------------------------------------------------------------------------------------


def _read_back(path: str, fmt: str) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "csv":
        return pacsv.read_csv(path).to_pylist()
    text = Path(path).read_text()
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return parse_fasta(text)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "fasta", "jsonl"])
def test_every_format_reads_back(fmt: str, dna_files: dict[str, str], dna_table: pa.Table) -> None:
    assert Path(dna_files[fmt]).name == f"dna.{fmt}"
    assert _read_back(dna_files[fmt], fmt) == _rows(dna_table)


def test_fasta_is_wrapped_at_60(dna_files: dict[str, str]) -> None:
    lines = Path(dna_files["fasta"]).read_text().splitlines()
    assert lines[0].startswith(">dna-000001 label=") and "motif_start=" in lines[0]
    body = [line for line in lines if not line.startswith(">")]
    assert max(len(line) for line in body) == FASTA_WIDTH
    assert len(body) > len(lines) - len(body)  # 40-90 nt records span more than one line


def test_write_creates_parents_and_rejects_unknown_format(tmp_path: Path) -> None:
    table = generate(DatasetSpec("protein", 5, 10, 130, "WHCKYM"))
    path = write(table, tmp_path / "a" / "b" / "p.fasta", "fasta")
    assert [r["sequence"] for r in parse_fasta(Path(path).read_text())] == (
        table["sequence"].to_pylist()
    )
    with pytest.raises(ValueError, match="fmt='xlsx'"):
        write(table, tmp_path / "p.xlsx", "xlsx")


# --- tokenizer and trainer --------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "vocab_size"), [("kmer", 5 + 4**6), ("residue", 30)])
def test_saved_tokenizer_loads_back(tmp_path: Path, scheme: str, vocab_size: int) -> None:
    from transformers import AutoTokenizer

    save_tokenizer(tmp_path, scheme, 6)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok.get_vocab()) == vocab_size
    ids = (
        tok.pad_token_id,
        tok.unk_token_id,
        tok.cls_token_id,
        tok.sep_token_id,
        tok.mask_token_id,
    )
    assert ids == (0, 1, 2, 3, 4)
    row = make_tokenizer(scheme, tok, 6)("ACGTACGA")
    assert row.ok and row.n_unknown == 0
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:2] == ["[PAD]", "[UNK]"]


def test_collate_frames_and_pads() -> None:
    batch = collate([np.array([7, 8, 9]), np.array([5])], cls_id=2, sep_id=3, pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 8, 9, 3], [2, 5, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_trainer_rejects_bad_input(tmp_path: Path, dna_table: pa.Table) -> None:
    with pytest.raises(ValueError, match="scheme='text'"):
        train_classifier(dna_table, tmp_path, TrainSpec(scheme="text"))
    with pytest.raises(ValueError, match="hidden=60 must be divisible by heads=8"):
        train_classifier(dna_table, tmp_path, TrainSpec(hidden=60, heads=8))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        train_classifier(dna_table.drop_columns(["label"]), tmp_path, TrainSpec())
    short = pa.table({"id": ["x", "y"], "sequence": ["ACGTACGT", "ACG"], "label": [0, 1]})
    with pytest.raises(ValueError, match="row 'y'.*too_short"):
        train_classifier(short, tmp_path, TrainSpec(epochs=1))


def _accuracy(model_dir: Path, table: pa.Table, scheme: str) -> float:
    loaded = load_model(ModelConfig(path=str(model_dir)))
    tokenize = make_tokenizer(scheme, loaded.tokenizer, 6)
    rows = [tokenize(s).content_ids for s in table["sequence"].to_pylist()]
    ids = loaded.special_ids()
    preds = predict(loaded.model, rows, (ids["cls"], ids["sep"], ids["pad"]))
    return float((preds == table["label"].to_numpy()).mean())


def test_dna_fixture_model_loads_and_finds_the_motif(
    dna_model_dir: Path, dna_table: pa.Table
) -> None:
    metrics = json.loads((dna_model_dir / METRICS_FILE).read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["n_test"] == 120
    assert (dna_model_dir / "model.safetensors").is_file()
    assert _accuracy(dna_model_dir, dna_table, "kmer") >= 0.9
    # Shuffle the sequences' letters: the motif goes, and with it the positive calls.
    rng = np.random.default_rng(0)
    shuffled = [("".join(rng.permutation(list(s)))) for s in dna_table["sequence"].to_pylist()]
    shuffled_table = dna_table.set_column(1, "sequence", pa.array(shuffled))
    positives = shuffled_table.filter(pc.equal(shuffled_table["label"], 1))
    assert _accuracy(dna_model_dir, positives, "kmer") < 0.2


def test_protein_fixture_model_loads_and_finds_the_motif(
    protein_model_dir: Path, protein_table: pa.Table
) -> None:
    loaded = load_model(ModelConfig(path=str(protein_model_dir)))
    assert loaded.model_type == "bert" and loaded.num_labels == 2
    assert loaded.max_content_tokens == 510
    assert _accuracy(protein_model_dir, protein_table, "residue") >= 0.85


def test_trainer_reuses_an_identical_run(
    dna_model_dir: Path, dna_table: pa.Table, dna_train_spec: TrainSpec
) -> None:
    weights = dna_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    metrics = train_classifier(dna_table, dna_model_dir, dna_train_spec)
    assert metrics["reused"] is True
    assert time.perf_counter() - started < 2.0
    assert weights.stat().st_mtime_ns == before
    changed = dataclasses.replace(dna_train_spec, epochs=dna_train_spec.epochs + 1)
    assert dataset_hash(dna_table, changed) != metrics["hash"]
    assert dataset_hash(dna_table.slice(1), dna_train_spec) != metrics["hash"]


# --- the full demo (slow) ---------------------------------------------------------------------


@pytest.mark.slow
def test_build_demo_reaches_95_percent(tmp_path: Path, record_property) -> None:
    lines: list[str] = []
    result = build_demo(tmp_path, log=lines.append)
    metrics = result["metrics"]
    assert metrics["accuracy"] >= 0.95, metrics
    # About 17 s on 2 idle cores (the goal is under 2 minutes). Not asserted: wall time says more
    # about whatever else shares the cores than about the trainer; the epochs bound the work.
    record_property("demo_dna_train_seconds", metrics["seconds"])
    assert set(result["data"]) == {"parquet", "csv", "fasta", "jsonl"}
    assert pq.read_table(result["data_path"]).num_rows == 2000
    assert Path(result["data_path"]).parent == Path(result["data_dir"]) == tmp_path / "data"
    assert load_model(ModelConfig(path=result["model_dir"])).num_labels == 2
    assert build_demo(tmp_path, log=lines.append)["metrics"]["reused"] is True
    assert any("reused" in line for line in lines)


@pytest.mark.slow
def test_demo_protein_spec_trains_well(tmp_path: Path, record_property) -> None:
    metrics = train_classifier(generate(demo_protein_spec()), tmp_path, demo_train_spec("protein"))
    assert metrics["accuracy"] >= 0.95, metrics
    record_property("demo_protein_train_seconds", metrics["seconds"])  # about 21 s on 2 idle cores
