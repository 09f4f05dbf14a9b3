"""Input files -> standard columns: ids, source rows, labels, compression, and one clear error
line (naming the file) for every input a run cannot use. No Ray."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.config import DataConfig
from raysattr.demo.data import FORMATS as DEMO_FORMATS
from raysattr.errors import ConfigError, InputError, MissingInputError
from raysattr.io import readers
from raysattr.io.sources import EXTENSIONS, FORMAT_CHOICES, list_inputs, read_file

ROWS = [
    {"id": "a", "sequence": "ACGTAC", "label": 1},
    {"id": "b", "sequence": "GGCATT", "label": 0},
    {"id": "c", "sequence": "TTTACG", "label": None},
]


def _read(path: Path, **data) -> pa.Table:
    cfg = DataConfig(uri=str(path), **data)
    return pa.concat_tables(list(read_file(str(path), cfg)))


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _as_fasta(rows: list[dict]) -> str:
    heads = [f">{r['id']}" + ("" if r["label"] is None else f" label={r['label']}") for r in rows]
    return "".join(
        f"{h}\n{r['sequence'][:3]}\n{r['sequence'][3:]}\n" for h, r in zip(heads, rows, strict=True)
    )


def _as_csv(rows: list[dict], sep: str = ",") -> str:
    lines = [sep.join(("id", "sequence", "label"))]
    labels = ["" if r["label"] is None else str(r["label"]) for r in rows]
    lines += [sep.join((r["id"], r["sequence"], lab)) for r, lab in zip(rows, labels, strict=True)]
    return "\n".join(lines) + "\n"


def _as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _plain_files(root: Path) -> dict[str, Path]:
    pq.write_table(pa.Table.from_pylist(ROWS), root / "x.parquet")
    return {
        "parquet": root / "x.parquet",
        "csv": _write(root / "x.csv", _as_csv(ROWS)),
        "tsv": _write(root / "x.tsv", _as_csv(ROWS, "\t")),
        "fasta": _write(root / "x.fasta", _as_fasta(ROWS)),
        "jsonl": _write(root / "x.jsonl", _as_jsonl(ROWS)),
    }


def _standard(table: pa.Table) -> list[dict]:
    return table.select(["id", "sequence", "label", "source_row", "read_code"]).to_pylist()


# ------------------------------------------------------------------------ rows and columns
@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "fasta", "jsonl"])
def test_every_format_gives_the_same_standard_rows(tmp_path, fmt):
    table = _read(_plain_files(tmp_path)[fmt])
    assert [(r["id"], r["sequence"], r["label"]) for r in _standard(table)] == [
        (r["id"], r["sequence"], r["label"]) for r in ROWS
    ]
    assert table.column("source_row").to_pylist() == [0, 1, 2]
    assert table.schema.field("source_row").type == pa.int64()
    assert set(table.column("source").to_pylist()) == {str(tmp_path / f"x.{fmt}")}
    assert table.column("read_error").null_count == table.column("read_code").null_count == 3


@pytest.mark.parametrize("fmt", ["parquet", "csv", "fasta", "jsonl"])
def test_gzipped_inputs_read_the_same_rows_as_plain(tmp_path, fmt):
    plain = _plain_files(tmp_path)[fmt]
    packed = _write(tmp_path / f"{plain.name}.gz", gzip.compress(plain.read_bytes()))
    assert _standard(_read(packed)) == _standard(_read(plain))
    assert _read(packed).column("source").to_pylist()[0].endswith(".gz")


def test_gzipped_tsv(tmp_path):
    packed = _write(tmp_path / "x.tsv.gz", gzip.compress(_as_csv(ROWS, "\t").encode()))
    assert _read(packed).column("id").to_pylist() == ["a", "b", "c"]


def test_fasta_record_with_empty_header_gets_file_row_id(tmp_path):
    path = _write(tmp_path / "m.fasta", ">fa\nACGTAC\n>\nACGTTT\n>   \nGGG\n>fb x=1\nAAA\n")
    table = _read(path, label_column=None)
    assert table.column("id").to_pylist() == ["fa", "m.fasta:1", "m.fasta:2", "fb"]
    assert table.column("source_row").to_pylist() == [0, 1, 2, 3]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_null_empty_and_blank_ids_become_file_row(tmp_path, fmt):
    rows = [
        {"id": "a", "sequence": "ACGT", "label": 1},
        {"id": None, "sequence": "ACGT", "label": 1},
        {"id": "", "sequence": "ACGT", "label": 1},
        {"id": "  ", "sequence": "ACGT", "label": 1},
    ]
    path = tmp_path / f"n.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "csv":
        _write(path, 'id,sequence,label\na,ACGT,1\n,ACGT,1\n"",ACGT,1\n  ,ACGT,1\n')
    else:
        _write(path, _as_jsonl(rows))
    ids = _read(path).column("id").to_pylist()
    assert ids == ["a", f"n.{fmt}:1", f"n.{fmt}:2", f"n.{fmt}:3"]


def test_missing_id_column_gives_file_row_ids(tmp_path):
    path = _write(tmp_path / "x.csv", "sequence,label\nACGT,1\nGGGG,0\n")
    assert _read(path).column("id").to_pylist() == ["x.csv:0", "x.csv:1"]


def test_source_row_counts_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)
    rows = [{"id": None, "sequence": "ACGT", "label": i % 2} for i in range(5)]
    paths = _plain_files(tmp_path)
    _write(paths["jsonl"], _as_jsonl(rows))
    _write(paths["fasta"], ">\nACGT\n" * len(rows))
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    for fmt in ("jsonl", "fasta", "parquet"):
        tables = list(read_file(str(paths[fmt]), DataConfig(uri=str(paths[fmt]))))
        assert [t.num_rows for t in tables] == [2, 2, 1], fmt
        table = pa.concat_tables(tables)
        assert table.column("source_row").to_pylist() == [0, 1, 2, 3, 4]
        assert table.column("id").to_pylist() == [f"x.{fmt}:{i}" for i in range(5)]


def test_fasta_labels_in_later_records_only_are_kept(tmp_path):
    path = _write(tmp_path / "l.fasta", ">a\nACGT\n>b label=1 batch=7\nACGT\n")
    table = _read(path, passthrough_columns=["batch"])
    assert table.column("label").to_pylist() == [None, 1]
    assert table.column("batch").to_pylist() == [None, "7"]


def test_fasta_non_utf8_bytes_are_invalid_encoding_rows(tmp_path):
    path = _write(tmp_path / "e.fasta", b">a\nACGT\n>b\nAC\xffGT\n")
    rows = _read(path, label_column=None).to_pylist()
    assert rows[0]["read_code"] is None
    assert rows[1]["read_code"] == "invalid_encoding" and "UTF-8" in rows[1]["read_error"]


# ------------------------------------------------------------------------------ labels
def test_nan_label_becomes_null(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"sequence": ["ACGT"] * 3, "label": [1.0, float("nan"), 0.0]}), path)
    labels = _read(path).column("label")
    assert labels.type == pa.int64() and labels.to_pylist() == [1, None, 0]


def test_label_spellings_that_are_class_indices(tmp_path):
    csv = _write(tmp_path / "s.csv", "sequence,label\nACGT,1\nACGT, 2 \nACGT,\nACGT,3.0\n")
    assert _read(csv).column("label").to_pylist() == [1, 2, None, 3]
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"sequence": ["A", "C"], "label": [True, False]}), path)
    assert _read(path).column("label").to_pylist() == [1, 0]
    jsonl = _write(
        tmp_path / "m.jsonl", '{"sequence": "A", "label": 1}\n{"sequence": "C", "label": "0"}\n'
    )
    assert _read(jsonl).column("label").to_pylist() == [1, 0]


def test_fractional_label_names_file_column_and_row(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"sequence": ["ACGT"] * 3, "label": [1.0, 0.5, 0.25]}), path)
    with pytest.raises(InputError) as err:
        _read(path)
    message = str(err.value)
    assert "f.parquet" in message and "'label'" in message and "row 1" in message
    assert "0.5" in message and "\n" not in message


def test_text_label_names_the_first_bad_row(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)
    path = _write(
        tmp_path / "t.jsonl", _as_jsonl([{"sequence": "A", "label": v} for v in (1, 0, 1, "cat")])
    )
    with pytest.raises(InputError, match=r"t\.jsonl.*'label'.*row 3") as err:
        _read(path)
    assert "'cat'" in str(err.value)


# ------------------------------------------------------------------------------ JSON Lines
def test_broken_jsonl_lines_become_error_rows(tmp_path):
    path = _write(
        tmp_path / "j.jsonl",
        '{"id": "j0", "sequence": "ACGT", "label": 1}\n\n{broken\n[1, 2]\n'
        '{"id": "j4", "sequence": 7, "label": 0}\n{"id": 5, "sequence": "GGCC", "label": 0}\n',
    )
    rows = _read(path).to_pylist()
    assert [r["id"] for r in rows] == ["j0", "j.jsonl:1", "j.jsonl:2", "j4", "5"]
    assert [r["source_row"] for r in rows] == [0, 1, 2, 3, 4]  # blank lines are not records
    assert [r["read_code"] for r in rows] == [None, *["invalid_record"] * 3, None]
    assert rows[1]["read_error"].startswith("line 3 is not valid JSON: ")
    assert rows[2]["read_error"].startswith("line 4 is not valid JSON: ")
    assert "line 5" in rows[3]["read_error"] and rows[3]["sequence"] is None
    assert rows[0]["sequence"] == "ACGT" and rows[4]["sequence"] == "GGCC"


@pytest.mark.parametrize("text", ['{\n  "rows": 24\n}\n', '[{"id": "a"}]\n', '{"id": "a"\n'])
def test_file_whose_first_record_is_not_json_lines_is_an_input_error(tmp_path, text):
    path = _write(tmp_path / "meta.json", text)
    with pytest.raises(InputError) as err:
        _read(path)
    message = str(err.value)
    assert "meta.json" in message and "not a JSON Lines file" in message
    assert "remove it" in message and "*.parquet" in message and "\n" not in message


# --------------------------------------------------------------------- files it cannot use
def test_fasta_data_before_the_first_header_names_file_and_line(tmp_path):
    path = _write(tmp_path / "x.fasta", "\nACGTACGT\n>a\nACGT\n")
    with pytest.raises(InputError, match=r"line 2 .*before the first '>'.*x\.fasta"):
        _read(path)


def test_unparseable_csv_names_the_file_and_the_row(tmp_path):
    path = _write(tmp_path / "bad.csv", "id,sequence,label\na,ACGT,1\nb,ACGT,1,extra\n")
    with pytest.raises(InputError, match=r"cannot read it as csv.*b,ACGT,1,extra.*bad\.csv"):
        _read(path)


@pytest.mark.parametrize("name, body", [("bad.parquet", b"PAR1 not really"), ("t.csv.gz", b"no")])
def test_corrupt_files_name_the_file(tmp_path, name, body):
    path = _write(tmp_path / name, body)
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        _read(path)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_missing_column_lists_the_columns_present(tmp_path, fmt):
    path = _plain_files(tmp_path)[fmt]
    with pytest.raises(InputError) as err:
        _read(path, sequence_column="seq")
    message = str(err.value)
    assert "'seq'" in message and "columns present: " in message and path.name in message
    assert "sequence" in message.split("columns present: ")[1]


def test_missing_fasta_passthrough_is_an_error(tmp_path):
    path = _plain_files(tmp_path)["fasta"]
    with pytest.raises(InputError, match=r"'batch' not found.*x\.fasta"):
        _read(path, passthrough_columns=["batch"])


def test_unknown_extension_asks_for_data_format(tmp_path):
    path = _write(tmp_path / "x.txt", "ACGT\n")
    with pytest.raises(InputError, match=r"x\.txt.*data\.format"):
        _read(path)


def test_unknown_data_format_fails_reading_with_the_formats_of_the_table(tmp_path):
    path = _plain_files(tmp_path)["csv"]
    with pytest.raises(ConfigError) as err:
        _read(path, format="xml")
    assert "data.format='xml'" in str(err.value)
    assert all(name in str(err.value) for name in readers.INPUT_FORMATS)


# ------------------------------------------------------------------------ the format table
def test_extensions_and_format_choices_come_from_the_reader_table():
    table = readers.INPUT_FORMATS
    assert ("auto", *table) == FORMAT_CHOICES
    assert {ext: name for name, f in table.items() for ext in f.extensions} == EXTENSIONS
    assert len(EXTENSIONS) == sum(len(f.extensions) for f in table.values())  # no clash
    assert all(f.name == name for name, f in table.items())


def test_demo_writes_every_input_format():
    assert set(DEMO_FORMATS) == set(readers.INPUT_FORMATS)


def test_a_registered_format_is_listed_and_read(tmp_path, monkeypatch):
    """Adding a format is one table entry: its extension is listed and its reader used."""

    def _lines(handle, req):  # one sequence per line, ids from line numbers
        sequences = [line.decode().strip() for line in handle if line.strip()]
        table = pa.table({readers.FASTA_SEQUENCE: pa.array(sequences, pa.string())})
        yield readers.with_error_columns(table)

    fmt = readers.InputFormat(
        "lines", _lines, (".seqs",), sequence_column=readers.FASTA_SEQUENCE, optional_labels=True
    )
    monkeypatch.setitem(readers.INPUT_FORMATS, "lines", fmt)
    monkeypatch.setitem(EXTENSIONS, ".seqs", "lines")
    _write(tmp_path / "x.seqs", "ACGT\nGGCC\n")
    assert [Path(f.uri).name for f in list_inputs(str(tmp_path))] == ["x.seqs"]
    rows = _read(tmp_path / "x.seqs").select(["id", "sequence", "label"]).to_pylist()
    assert rows == [
        {"id": "x.seqs:0", "sequence": "ACGT", "label": None},
        {"id": "x.seqs:1", "sequence": "GGCC", "label": None},
    ]


# --------------------------------------------------------------------------- listing
def test_list_inputs_names_the_files_it_skips(tmp_path, caplog):
    _plain_files(tmp_path)
    for name in ("_SUCCESS", "notes.txt", "x.csv.crc"):
        _write(tmp_path / name, "x")
    with caplog.at_level(logging.INFO, logger="raysattr"):
        files = list_inputs(str(tmp_path))
    assert [Path(f.uri).name for f in files] == [
        "x.csv",
        "x.fasta",
        "x.jsonl",
        "x.parquet",
        "x.tsv",
    ]
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "skipped 3 file(s)" in lines[0]
    assert all(name in lines[0] for name in ("_SUCCESS", "notes.txt", "x.csv.crc"))


def test_list_inputs_keeps_gzipped_data_files(tmp_path):
    _write(tmp_path / "a.csv.gz", gzip.compress(_as_csv(ROWS).encode()))
    assert [Path(f.uri).name for f in list_inputs(str(tmp_path))] == ["a.csv.gz"]


def test_nothing_there_is_a_missing_input_error(tmp_path):
    with pytest.raises(MissingInputError, match="no such file"):
        list_inputs(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no input files"):
        list_inputs(str(tmp_path / "empty"))


def test_wrong_csv_delimiter_says_which_setting_to_change(tmp_path):
    path = _write(tmp_path / "x.csv", "id;sequence;label\na;ACGT;1\n")
    with pytest.raises(InputError, match=r"columns present: id;sequence;label.*csv_delimiter"):
        _read(path)


def test_labels_are_optional_only_where_there_is_no_schema(tmp_path):
    """A JSON Lines or FASTA file without any label is unlabelled; a table without the label
    column is a configuration error."""
    jsonl = _write(tmp_path / "u.jsonl", '{"id": "a", "sequence": "ACGT"}\n')
    fasta = _write(tmp_path / "u.fasta", ">a\nACGT\n")
    for path in (jsonl, fasta):
        labels = _read(path).column("label")
        assert labels.type == pa.int64() and labels.to_pylist() == [None]
    csv = _write(tmp_path / "u.csv", "id,sequence\na,ACGT\n")
    with pytest.raises(InputError, match=r"'label' not found.*u\.csv"):
        _read(csv)
