"""The bad-input corpus: each way a user can get a run wrong, with the outcome they must see.

Pre-flight cases run `raysattr run` (the CLI, in this process) with `output.mode=overwrite` over
a copy of a finished earlier output, and check: the exit code, exactly one `error:` line holding
the expected words, no traceback, Ray never started (`init_ray` is replaced by a tripwire), and
the earlier output byte-for-byte intact. Row-level cases (Ray, shared session) check error codes
and ok counts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raysattr.cli import main
from raysattr.tokenize import build_kmer_vocab

from .factories import attribute_without_ray, dna_rows, save_random_bert
from .servers import free_port


@dataclass
class Ctx:
    """What a case builds on: a good data file, a good model, a scratch folder."""

    data: Path
    model: Path
    tmp: Path

    def model_copy(self, name: str) -> Path:
        target = self.tmp / name
        shutil.copytree(self.model, target)
        return target


@pytest.fixture(scope="module")
def corpus_base(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(good data, good model, a finished earlier output) built without Ray."""
    root = tmp_path_factory.mktemp("corpus")
    data = root / "good.parquet"
    pq.write_table(dna_rows(24, id_prefix="s"), data)
    model = save_random_bert(root / "model", build_kmer_vocab(3), max_positions=64)
    previous = Path(attribute_without_ray(data, model, root / "previous", "tokenize.k=3"))
    (previous / "summary.json").write_text(json.dumps({"rows": {"out": 24, "ok": 24}}))
    (previous / "report.html").write_text("<html>earlier report</html>")
    return data, model, previous


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------- builders
def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def data(path_of: Callable[[Ctx], Path]) -> Callable[[Ctx], list[str]]:
    return lambda c: [f"data.uri={path_of(c)}"]


def model(edit: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    def build(c: Ctx) -> list[str]:
        target = c.model_copy("broken-model")
        edit(target)
        return [f"model.path={target}"]

    return build


def _folder(c: Ctx, name: str, content: str | bytes) -> Path:
    """A folder holding the good data file as `a.parquet` and `name` next to it."""
    folder = c.tmp / "folder"
    _write(folder / name, content)
    shutil.copy(c.data, folder / "a.parquet")
    return folder


def _pickle_only(d: Path) -> None:
    from safetensors.torch import load_file

    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()


def _truncate_weights(d: Path) -> None:
    blob = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(blob[: len(blob) // 2])


def _bigger_vocab(d: Path) -> None:
    from transformers import BertTokenizer

    vocab = [*build_kmer_vocab(3), *(f"EXTRA{i}" for i in range(40))]  # 109 tokens, 69 rows
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False).save_pretrained(d)


def _regression_head(d: Path) -> None:
    shutil.rmtree(d)
    save_random_bert(d, build_kmer_vocab(3), num_labels=1, max_positions=64)


def _no_tokenizer(d: Path) -> None:
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (d / name).exists():
            (d / name).unlink()


@dataclass
class Case:
    name: str
    build: Callable[[Ctx], list[str]]
    exit_code: int
    words: tuple[str, ...]


CASES = [
    # ---- config and usage: exit 2
    Case("unknown_key", lambda c: ["data.urii=x"], 2, ("data.urii", "valid keys")),
    Case("wrong_type", lambda c: ["attribution.n_steps=many"], 2, ("attribution.n_steps",)),
    Case("bad_mode", lambda c: ["output.mode=append"], 2, ("output.mode", "resume, overwrite")),
    Case("bad_target", lambda c: ["attribution.target=best"], 2, ("attribution.target",)),
    Case("bad_dup_policy", lambda c: ["data.duplicate_ids=drop"], 2, ("data.duplicate_ids",)),
    Case("bad_method", lambda c: ["attribution.method=shap"], 2, ("attribution.method", "lig")),
    Case(
        "ism_on_text",
        lambda c: ["attribution.method=ism", "tokenize.scheme=text"],
        2,
        ("attribution.method='ism'", "kmer or residue", "tokenize.scheme='text'"),
    ),
    Case(
        "half_coordinates",
        lambda c: ["data.coordinates.chrom=chrom"],
        2,
        ("data.coordinates", "chrom and start"),
    ),
    Case("actors", lambda c: ["compute.max_actors=0"], 2, ("compute.max_actors",)),
    Case("no_equals", lambda c: ["attribution.n_steps"], 2, ("key=value",)),
    # ---- inputs: exit 1, before anything is touched
    Case("no_such_file", data(lambda c: c.tmp / "nope.parquet"), 1, ("no such file", "data.uri")),
    Case(
        "empty_dir",
        data(lambda c: (c.tmp / "empty").mkdir() or c.tmp / "empty"),
        1,
        ("no input files", "data.uri"),
    ),
    Case(
        "missing_column",
        data(lambda c: _parquet(c.tmp / "x.parquet", pa.table({"id": ["a"], "seq": ["ACGT"]}))),
        1,
        ("'sequence'", "columns present", "x.parquet"),
    ),
    Case(
        "corrupt_parquet",
        data(lambda c: _write(c.tmp / "bad.parquet", b"PAR1 not really")),
        1,
        ("bad.parquet",),
    ),
    Case(
        "corrupt_second_file", data(lambda c: _folder(c, "b.parquet", b"junk")), 1, ("b.parquet",)
    ),
    Case(
        "json_sidecar",
        data(lambda c: _folder(c, "meta.json", '{\n  "rows": 24\n}\n')),
        1,
        ("meta.json", "json lines"),
    ),
    Case(
        "jsonl_first_line_broken",
        data(lambda c: _write(c.tmp / "x.jsonl", '{"id": "a", "sequence": "ACGT"\n')),
        1,
        ("x.jsonl", "json lines"),
    ),
    Case(
        "fasta_text_before_header",
        data(lambda c: _write(c.tmp / "x.fasta", "ACGTACGT\n>a\nACGTACGT\n")),
        1,
        ("x.fasta", ">"),
    ),
    Case(
        "fractional_label",
        data(
            lambda c: _parquet(
                c.tmp / "f.parquet",
                pa.table({"id": ["a", "b"], "sequence": ["ACGTAC", "ACGTAC"], "label": [1.0, 0.5]}),
            )
        ),
        1,
        ("f.parquet", "label", "row"),
    ),
    Case(
        "text_label",
        data(lambda c: _write(c.tmp / "t.csv", "id,sequence,label\na,ACGTAC,yes\nb,ACGTAC,no\n")),
        1,
        ("t.csv", "label"),
    ),
    Case(
        "unknown_extension",
        data(lambda c: _write(c.tmp / "x.txt", "ACGT\n")),
        1,
        ("x.txt", "data.format"),
    ),
    Case(
        "no_rows",
        data(lambda c: _parquet(c.tmp / "e.parquet", dna_rows(3).slice(0, 0))),
        1,
        ("no rows", "data.uri"),
    ),
    Case(
        "wrong_delimiter",
        data(lambda c: _write(c.tmp / "x.csv", "id;sequence;label\na;ACGTAC;1\n")),
        1,
        ("x.csv", "columns present"),
    ),
    Case(
        "missing_passthrough",
        lambda c: ["data.passthrough_columns=[batch]"],
        1,
        ("'batch'", "columns present"),
    ),
    # ---- model: exit 1, found from the files, weights never loaded
    Case(
        "model_typo",
        lambda c: [f"model.path={c.tmp / 'modl'}"],
        1,
        ("model.path", "modl"),
    ),
    Case("hub_id_not_cached", lambda c: ["model.path=nobody/no-such-model"], 1, ("model.path",)),
    Case("pickle_only", model(_pickle_only), 1, ("pickle", "allow_pickle")),
    Case("corrupt_safetensors", model(_truncate_weights), 1, ("model.safetensors",)),
    Case(
        "no_weights",
        model(lambda d: (d / "model.safetensors").unlink()),
        1,
        ("weights", "model.path"),
    ),
    Case("vocab_bigger_than_embeddings", model(_bigger_vocab), 1, ("109", "69")),
    Case("k_mismatch", lambda c: ["tokenize.k=4"], 2, ("tokenize.k=3", "3-mers")),
    # a config value that does not fit the model is a config error (exit 2): the fix is a key
    Case("regression_head", model(_regression_head), 2, ("attribution.output=logit",)),
    Case("target_out_of_range", lambda c: ["attribution.target=class:5"], 2, ("class:5",)),
    Case(
        "no_config",
        model(lambda d: (d / "config.json").unlink()),
        1,
        ("config.json",),
    ),
    Case(
        "garbled_config",
        model(lambda d: (d / "config.json").write_text("{not json")),
        1,
        ("config.json",),
    ),
    Case("no_tokenizer", model(_no_tokenizer), 1, ("tokenizer",)),
    Case("residue_on_kmer_vocab", lambda c: ["tokenize.scheme=residue"], 2, ("tokenize.scheme",)),
    # ---- output: exit 1
    Case(
        "output_is_a_file",
        lambda c: [f"output.uri={_write(c.tmp / 'out.txt', 'x')}"],
        1,
        ("output.uri", "cannot write"),
    ),
    Case(
        "output_under_a_file",
        lambda c: [f"output.uri={_write(c.tmp / 'f.txt', 'x') / 'out'}"],
        1,
        ("output.uri", "cannot write"),
    ),
    # ---- S3: exit 1, one line naming endpoint and bucket
    Case(
        "s3_unreachable",
        lambda c: ["data.uri=s3://nowhere/x.parquet"],  # AWS_ENDPOINT_URL set by the test
        1,
        ("cannot reach", "nowhere", "127.0.0.1"),
    ),
    Case(
        "s3_output_unreachable",
        lambda c: ["output.uri=s3://nowhere/out"],
        1,
        ("output.uri", "nowhere"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_preflight_case(case, corpus_base, tmp_path, capsys, monkeypatch):
    good_data, good_model, previous = corpus_base
    output = tmp_path / "output"
    shutil.copytree(previous, output)
    before = snapshot(output)
    if case.name.startswith("s3_"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    started = []
    monkeypatch.setattr("raysattr.pipeline.plan.init_ray", lambda *a: started.append(a))
    overrides = case.build(Ctx(good_data, good_model, tmp_path))
    code = main(
        [
            "run",
            "configs/demo.yaml",
            f"data.uri={good_data}",
            f"model.path={good_model}",
            f"output.uri={output}",
            "output.mode=overwrite",
            "tokenize.k=3",
            "data.passthrough_columns=[]",
            *overrides,
        ]
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == case.exit_code, err
    assert len(lines) == 1, err
    for word in case.words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert "Traceback" not in err
    assert not started, "pre-flight let the run reach Ray"
    assert snapshot(output) == before  # the earlier output is byte-for-byte intact


def test_corpus_has_forty_cases():
    # pre-flight cases + row-level outcomes + lease (2), stale lease + quarantine (2), exact
    # resume of duplicates (1), GPUs (1), all-error run (1), --debug (1), error in an actor (1)
    assert len(CASES) + len(ROW_CASES) + 9 >= 40


def test_debug_shows_the_traceback(corpus_base, tmp_path, capsys):
    good_data, good_model, _ = corpus_base
    code = main(
        ["--debug", "run", "configs/demo.yaml", f"data.uri={tmp_path / 'nope'}", "tokenize.k=3"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "error: " in err


# ----------------------------------------------------------------------- row-level (with Ray)
ROW_CASES = {
    # name: (id in the output, expected status)
    "fasta_header_only": ("mixed.fasta:1", "ok"),
    "fasta_normal": ("fa", "ok"),
    "nan_label": ("nan-label", "ok"),
    "duplicate_first_copy": ("dup", "ok"),
    "jsonl_broken_line": ("mixed.jsonl:1", "invalid_record"),
    "jsonl_good_line": ("j0", "ok"),
    "gzip_csv": ("gz0", "ok"),
    "too_short": ("short", "too_short"),
}


def _mixed_inputs(folder: Path) -> Path:
    folder.mkdir()
    _write(folder / "mixed.fasta", ">fa\nACGTACGTACGTAC\n>\nACGTTGCAACGT\n")
    _parquet(
        folder / "nan.parquet",
        pa.table(
            {
                "id": ["nan-label", "dup", "short", None],
                "sequence": ["ACGTACGTAAC", "ACGTACGGTA", "AC", "ACGTACGTACGT"],
                "label": [float("nan"), 1.0, 0.0, 1.0],
            }
        ),
    )
    _write(folder / "mixed.jsonl", '{"id": "j0", "sequence": "ACGTTTGACA"}\n{broken\n')
    _write(
        folder / "z.csv.gz",
        gzip.compress(b"id,sequence,label\ngz0,ACGTACGTAC,1\ndup,ACGTACGTAAAA,0\n"),
    )
    return folder


@pytest.mark.ray
def test_row_level_corpus(ray_session, corpus_base, tmp_path, capsys):
    _, good_model, _ = corpus_base
    folder = _mixed_inputs(tmp_path / "mixed")
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "configs/demo.yaml",
            f"data.uri={folder}",
            f"model.path={good_model}",
            f"output.uri={out}",
            "tokenize.k=3",
            "data.passthrough_columns=[]",
            "attribution.quadrature=fixed",  # not about convergence: a third of the path rule
            "attribution.n_steps=4",
            "compute.max_actors=1",  # demo.yaml allows 2: a second model load for a few rows
            "qc.enabled=false",
            "report.enabled=false",
        ]
    )
    assert code == 0, capsys.readouterr().err
    from raysattr.io.results import read_attributions

    table = read_attributions(str(out))
    rows = table.select(["id", "status", "label", "source", "source_row"]).to_pylist()
    status = {r["id"]: r["status"] for r in rows if r["status"] != "duplicate_id"}
    for name, (row_id, expected) in ROW_CASES.items():
        assert status.get(row_id) == expected, (name, row_id, status)
    nan_row = next(r for r in rows if r["id"] == "nan-label")
    assert nan_row["label"] is None
    dups = [r for r in rows if r["status"] == "duplicate_id"]
    assert len(dups) == 1 and dups[0]["source"].endswith("z.csv.gz")  # the later copy
    assert "nan.parquet:3" in status  # null id -> <file>:<row>
    assert len(rows) == 10  # every input row is a result row or an error row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["n_duplicate_ids"] == 1 and summary["rows"]["input"] == 10


@pytest.mark.ray
def test_all_error_rows_exit_1_and_overwrite_keeps_the_earlier_output(
    ray_session, corpus_base, tmp_path, capsys
):
    _, good_model, previous = corpus_base
    output = tmp_path / "output"
    shutil.copytree(previous, output)
    before = snapshot(output)
    data_file = _parquet(
        tmp_path / "short.parquet", pa.table({"id": ["a", "b"], "sequence": ["AC", "G"]})
    )
    code = main(
        [
            "run",
            "configs/demo.yaml",
            f"data.uri={data_file}",
            f"model.path={good_model}",
            f"output.uri={output}",
            "output.mode=overwrite",
            "tokenize.k=3",
            "data.label_column=null",
            "data.passthrough_columns=[]",
        ]
    )
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1 and "too_short=2" in line[0], err
    assert snapshot(output) == before
    assert not [p for p in os.listdir(output) if p.startswith(".staging")]


def _lease(output: Path, pid: int, heartbeat_age_s: float, host: str | None = None) -> None:
    import socket
    import time

    payload = {
        "run_id": "other-run",
        "host": host or socket.gethostname(),
        "pid": pid,
        "started": time.time() - 100,
        "heartbeat": time.time() - heartbeat_age_s,
        "ttl_s": 120,
    }
    _write(output / ".raysattr-lease.json", json.dumps(payload))


def _run_cli(data_uri, model_dir, output, *extra) -> int:
    return main(
        [
            "run",
            "configs/demo.yaml",
            f"data.uri={data_uri}",
            f"model.path={model_dir}",
            f"output.uri={output}",
            "tokenize.k=3",
            "data.passthrough_columns=[]",
            "attribution.quadrature=fixed",  # not about convergence: a third of the path rule
            "attribution.n_steps=4",
            "compute.max_actors=1",  # demo.yaml allows 2: a second model load for a few rows
            "qc.enabled=false",
            "report.enabled=false",
            "output.mode=resume",
            *extra,
        ]
    )


@pytest.mark.parametrize("holder", ["live_here", "live_elsewhere"])
def test_second_run_is_refused_while_the_lease_is_held(
    holder, corpus_base, tmp_path, capsys, monkeypatch
):
    good_data, good_model, previous = corpus_base
    output = tmp_path / "output"
    shutil.copytree(previous, output)
    if holder == "live_here":
        _lease(output, os.getpid(), heartbeat_age_s=5)
    else:  # another host: only the heartbeat can tell, and it is fresh
        _lease(output, 1, heartbeat_age_s=5, host="worker-7")
    before = snapshot(output)
    started = []
    monkeypatch.setattr("raysattr.pipeline.plan.init_ray", lambda *a: started.append(a))
    code = _run_cli(good_data, good_model, output, "output.mode=overwrite")
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1, err
    assert "in use by run other-run" in line[0] and "output.uri" in line[0]
    assert not started and snapshot(output) == before


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.ray
def test_stale_lease_is_taken_over_and_corrupt_part_quarantined(
    ray_session, corpus_base, tmp_path, capsys
):
    """A driver killed with SIGKILL leaves its lease (dead pid, this host) and maybe a torn part
    file: the next resume run takes the lease over, moves the part aside and recomputes it."""
    good_data, good_model, _ = corpus_base
    output = tmp_path / "output"
    assert _run_cli(good_data, good_model, output) == 0
    parts = sorted((output / "attributions").glob("part-*.parquet"))
    torn = parts[0]
    torn.write_bytes(torn.read_bytes()[:100])
    _lease(output, _dead_pid(), heartbeat_age_s=1)
    assert _run_cli(good_data, good_model, output) == 0, capsys.readouterr().err
    assert (output / "quarantine" / torn.name).exists()
    assert not (output / ".raysattr-lease.json").exists()
    from raysattr.io.results import read_attributions

    ids = read_attributions(str(output)).column("id").to_pylist()
    assert sorted(ids) == sorted(f"s{i}" for i in range(24))
    summary = json.loads((output / "summary.json").read_text())
    assert summary["rows"]["quarantined_parts"] and summary["rows"]["out"] > 0


@pytest.mark.ray
def test_duplicate_ids_exact_resume(ray_session, corpus_base, tmp_path):
    """A run that wrote only the first copies (killed, or `data.limit`), then a resume: the later
    copies are added exactly once, as `duplicate_id` rows (`keep` is covered in test_scan)."""
    _, good_model, _ = corpus_base
    table = dna_rows(6, id_prefix="s")
    data_file = _parquet(tmp_path / "d.parquet", pa.concat_tables([table, table.slice(0, 2)]))
    from raysattr.io.results import read_attributions

    out = tmp_path / "out"

    def counts() -> tuple[int, int, int, int]:
        rows = json.loads((out / "summary.json").read_text())["rows"]
        return rows["read"], rows["skipped_done"], rows["beyond_limit"], rows["input"]

    assert _run_cli(data_file, good_model, out, "data.limit=6") == 0
    assert counts() == (6, 0, 2, 8)  # the 2 rows past the limit are not "already done"
    assert _run_cli(data_file, good_model, out) == 0
    assert counts() == (2, 6, 0, 8)
    rows = read_attributions(str(out)).select(["id", "status"]).to_pylist()
    assert len(rows) == 8
    assert sorted(r["id"] for r in rows if r["status"] == "duplicate_id") == ["s0", "s1"]


@pytest.mark.ray
def test_gpus_that_no_node_has_fail_instead_of_hanging(ray_session, corpus_base, tmp_path, capsys):
    good_data, good_model, _ = corpus_base
    code = _run_cli(
        good_data,
        good_model,
        tmp_path / "out",
        "compute.gpus_per_actor=1",
        "compute.resource_timeout_s=1",
    )
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1, err
    assert "compute.gpus_per_actor=1" in line[0] and "0 GPUs" in line[0]


@pytest.mark.ray
def test_an_error_raised_inside_an_actor_is_one_line(ray_session, corpus_base, tmp_path, capsys):
    """Ray wraps an actor's exception (RayTaskError / ActorDiedError around it): the CLI prints
    the raysattr error behind it, as one line, with its exit code."""
    good_data, good_model, previous = corpus_base
    output = tmp_path / "output"
    shutil.copytree(previous, output)
    before = snapshot(output)
    code = _run_cli(
        good_data,
        good_model,
        output,
        "output.mode=overwrite",
        "attribution.method=needs_a_gpu",
        "attribution.method_modules=[tests.broken_method]",
    )
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1, err
    assert "runs only on CUDA replicas" in line[0] and "gpus_per_actor=1" in line[0]
    assert snapshot(output) == before
