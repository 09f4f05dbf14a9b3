"""Session-wide fixtures: tiny datasets with a planted motif and tiny models trained on them.

Everything is built once per session under pytest's tmp directory (the DNA model trains in about
5 s, the protein one in about 5 s on 2 CPU cores). The planted motif is the ground truth: a
classifier that is right well above chance must be using it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
import ray
import s3fs

# Models and tokenizers here are local directories; never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One torch thread per process, set before torch is imported (subprocesses inherit it; Ray gives
# its 1-CPU actors the same). With two OpenMP threads on 2 cores shared with the session's Ray
# processes, a thread descheduled by any of them stalls the other at every barrier: the DNA
# fixture's training ran 12x slower (2 epochs: 97 s with 2 threads vs 8 s with 1, same load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from raysattr.demo.data import FORMATS, DatasetSpec, generate, write  # noqa: E402
from raysattr.demo.train import TrainSpec, train_classifier  # noqa: E402

from .servers import MotoServer, apply_env, restore_env  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # in case torch came in earlier

DNA_MOTIF = "TATAATGCGC"
S3_BUCKET = "raysattr-test"


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on 127.0.0.1 for the whole session, bucket `S3_BUCKET` made; its
    endpoint and credentials are in os.environ (so Ray workers started later inherit them)."""
    server = MotoServer()
    previous = apply_env(server.env)
    try:
        fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
        fs.mkdir(S3_BUCKET)
        yield fs
    finally:
        restore_env(previous)
        server.stop()


@pytest.fixture(scope="session")
def ray_session(s3):
    """One in-process Ray for every test that needs it (started after the S3 variables are set,
    so its workers inherit them); starting Ray costs seconds, so tests share it."""
    if not ray.is_initialized():
        ray.init(
            num_cpus=8,
            object_store_memory=512 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
        )
    yield
    ray.shutdown()


PROTEIN_MOTIF = "WHCKYM"


@pytest.fixture(scope="session")
def dna_spec() -> DatasetSpec:
    """600 DNA rows of 40-90 nt; positives hold `DNA_MOTIF` inside residues 10-30."""
    return DatasetSpec("dna", 600, 40, 90, DNA_MOTIF, (10, 30), 0.5, seed=1)


@pytest.fixture(scope="session")
def dna_table(dna_spec: DatasetSpec) -> pa.Table:
    """Columns id, sequence, label, motif_start."""
    return generate(dna_spec)


@pytest.fixture(scope="session")
def dna_files(dna_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`dna_table` written as parquet, csv, fasta and jsonl: `{format: path}`."""
    root = tmp_path_factory.mktemp("dna_data")
    return {fmt: write(dna_table, root / f"dna.{fmt}", fmt) for fmt in FORMATS}


@pytest.fixture(scope="session")
def dna_train_spec() -> TrainSpec:
    """6-mer tokens, 2 layers x 64 hidden; 8 epochs over 480 rows."""
    return TrainSpec(scheme="kmer", k=6, epochs=8, seed=0)


@pytest.fixture(scope="session")
def dna_model_dir(
    dna_table: pa.Table, dna_train_spec: TrainSpec, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A DNABERT-style 6-mer classifier trained on `dna_table` (held-out accuracy ~0.99)."""
    out = tmp_path_factory.mktemp("dna_model")
    train_classifier(dna_table, out, dna_train_spec)
    return out


@pytest.fixture(scope="session")
def protein_spec() -> DatasetSpec:
    """400 protein rows of 30-60 aa; positives hold `PROTEIN_MOTIF` inside residues 5-17."""
    return DatasetSpec("protein", 400, 30, 60, PROTEIN_MOTIF, (5, 17), 0.5, seed=1)


@pytest.fixture(scope="session")
def protein_table(protein_spec: DatasetSpec) -> pa.Table:
    """Columns id, sequence, label, motif_start."""
    return generate(protein_spec)


@pytest.fixture(scope="session")
def protein_train_spec() -> TrainSpec:
    """One token per residue, 2 layers x 64 hidden; 12 epochs over 320 rows."""
    return TrainSpec(scheme="residue", epochs=12, seed=0)


@pytest.fixture(scope="session")
def protein_model_dir(
    protein_table: pa.Table,
    protein_train_spec: TrainSpec,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A ProtBert-style residue classifier trained on `protein_table` (held-out accuracy ~0.95)."""
    out = tmp_path_factory.mktemp("protein_model")
    train_classifier(protein_table, out, protein_train_spec)
    return out
