"""The pipeline's stages as plain callables on Arrow tables. None imports Ray: `plan.py` wires
them into Ray Data, and tests can call them on a table directly.

    read_files -> TokenizeStage -> sort_window (length routing) -> AttributeStage (one model
    replica; one engine call per length bucket) -> WriteStage

`AttributeStage` adds call accounting columns (`CALL_COLUMNS`: engine seconds, token positions,
padding) that `WriteStage` strips before writing and returns with the per-row summary, which
`write_block` sums into one packed `RunSummary` row per block; a resumed run's counts of rows
already written (`skipped.SKIPPED`, from `read_files`) and its carrier rows go the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.attribution import AttributionEngine
from raysattr.attribution.table import results_to_table
from raysattr.config import RunConfig
from raysattr.io.results import ResumeKeys
from raysattr.io.rundir import RunDir
from raysattr.io.scan import mark_later_copies
from raysattr.io.sources import read_file
from raysattr.models import load_tokenizer
from raysattr.models.check import scheme_tokenizer
from raysattr.pipeline.skipped import SKIPPED, is_carrier, skip_done
from raysattr.pipeline.summary import RunSummary
from raysattr.tokenize import TokenizedRow, error_row

FAULT_EXIT_ENV = "RAYSATTR_FAULT_EXIT_AT"  # "N": the attribute actor exits on its Nth batch...
FAULT_MARKER_ENV = "RAYSATTR_FAULT_MARKER"  # ...once: this file records that it already did


def read_files(
    batch: pa.Table,
    cfg: RunConfig,
    resume: ResumeKeys | None = None,
    later_copies: Mapping[str, Mapping[int, str]] | None = None,
    first_copies: Mapping[str, AbstractSet[int]] | None = None,
) -> Iterator[pa.Table]:
    """Read every file named in `batch["uri"]` (standard columns, `io.sources.read_file`).

    Args:
        batch: one column, `uri`.
        cfg: the run. With `data.duplicate_ids=error` each later copy of an id becomes a
            `duplicate_id` row (`read_code`) naming its first copy; with `keep` it is read as is.
        resume: what the output already holds; rows already written are skipped
            (`ResumeKeys.pending`) and counted on the rows read (`skipped.skip_done`).
            None: nothing is skipped.
        later_copies: `InputScan.later_copies`: file URI -> {source_row: first copy's position}.
        first_copies: `InputScan.first_copies`: file URI -> source_rows of first copies. Without
            it a first copy is skipped on resume by its id alone.
    """
    for uri in batch.column("uri").to_pylist():
        later = (later_copies or {}).get(uri, {})
        first = (first_copies or {}).get(uri, frozenset())
        tables = read_file(uri, cfg.data)
        if cfg.data.duplicate_ids == "error":
            tables = (mark_later_copies(table, later) for table in tables)
        if resume is not None:
            masks = ((t, resume.pending(t, later, first)) for t in tables)
            tables = skip_done(masks)
        yield from (table for table in tables if table.num_rows)


def length_bucket(n_tokens: int) -> int:
    """Power-of-two bucket of the framed length (`n_tokens + 2`), e.g. 64, 128, 256."""
    return 1 << max(4, int(np.ceil(np.log2(max(n_tokens + 2, 1)))))


def sort_window(table: pa.Table) -> pa.Table:
    """Sort a window of tokenized rows by content length (the length routing stage).

    Cut into consecutive slices downstream, each slice holds rows of one bucket (two at a
    boundary) whose lengths are neighbours, so the engine's micro-batches carry little padding.
    Error rows (no tokens) sort first.

    Args:
        table: tokenized rows (`n_tokens`, `bucket`, ...), `[n_rows]`.
    """
    if table.num_rows < 2:
        return table
    return table.take(pc.sort_indices(table, sort_keys=[("n_tokens", "ascending")]))


def bucket_groups(table: pa.Table) -> list[np.ndarray]:
    """Row indices of `table` per length bucket, smallest bucket first (input order kept within
    a bucket): one engine call each."""
    buckets = table.column("bucket").to_numpy(zero_copy_only=False)
    return [np.flatnonzero(buckets == b) for b in np.unique(buckets)]


_TOKENIZERS: dict[tuple, TokenizeStage] = {}  # per worker process: loaded once, reused by tasks


def tokenize_block(table: pa.Table, cfg: RunConfig) -> pa.Table:
    """`TokenizeStage` as a Ray task: the tokenizer is loaded once per worker process."""
    key = (astuple(cfg.model), astuple(cfg.tokenize))  # everything the tokenizer depends on
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = TokenizeStage(cfg)
    return _TOKENIZERS[key](table)


def write_block(table: pa.Table, output_uri: str, run_id: str | None = None) -> pa.Table:
    """`WriteStage` as a Ray task (it holds nothing worth keeping between blocks); returns the
    block's `RunSummary` packed in one row, so that what the driver receives does not grow
    with the rows of a block."""
    summary = RunSummary()
    summary.add(WriteStage(output_uri, run_id)(table))
    return summary.to_table()


class TokenizeStage:
    """Sequence -> token ids, residue spans and length bucket (CPU)."""

    def __init__(self, cfg: RunConfig):
        hf = load_tokenizer(cfg.model)
        self.tokenizer = scheme_tokenizer(cfg.tokenize, hf, f"model.path={cfg.model.path!r}")

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = [
            self._one(seq, err, code)
            for seq, err, code in zip(
                table.column("sequence").to_pylist(),
                table.column("read_error").to_pylist(),
                table.column("read_code").to_pylist(),
                strict=True,
            )
        ]
        return (
            table.drop_columns(["read_error", "read_code"])
            .append_column(
                "content_ids", pa.array([r.content_ids for r in rows], pa.list_(pa.int64()))
            )
            .append_column(
                "spans", pa.array([r.spans.reshape(-1) for r in rows], pa.list_(pa.int32()))
            )
            .append_column("residues", pa.array([r.residues for r in rows], pa.string()))
            .append_column("n_unknown", pa.array([r.n_unknown for r in rows], pa.int32()))
            .append_column("status", pa.array([r.error_code or "ok" for r in rows], pa.string()))
            .append_column("error", pa.array([r.error for r in rows], pa.string()))
            .append_column("n_tokens", pa.array([r.n_tokens for r in rows], pa.int32()))
            .append_column(
                "bucket", pa.array([length_bucket(r.n_tokens) for r in rows], pa.int32())
            )
        )

    def _one(self, sequence, read_error, read_code=None) -> TokenizedRow:
        # A record the reader could not use (undecodable bytes, broken JSON, a later copy of an
        # id) keeps the reader's code and is not tokenized; rows from before `read_code`
        # existed only had undecodable FASTA bytes.
        if read_error:
            return error_row(read_code or "invalid_encoding", read_error)
        return self.tokenizer(sequence)


def rows_from_table(table: pa.Table) -> list[TokenizedRow]:
    """Rebuild `TokenizedRow`s from the tokenize stage's columns."""
    rows = []
    for ids, spans, residues, unk, status, error in zip(
        *(
            table.column(c).to_pylist()
            for c in ("content_ids", "spans", "residues", "n_unknown", "status", "error")
        ),
        strict=True,
    ):
        row = TokenizedRow(
            np.asarray(ids, np.int64),
            np.asarray(spans, np.int32).reshape(-1, 2),
            residues or "",
            unk,
        )
        if status != "ok":
            row.error_code, row.error = status, error
        rows.append(row)
    return rows


# Per-row shares of the engine call that produced the row (summed per bucket by `RunSummary`):
# seconds, token positions in its micro-batches, and how many of those were padding.
CALL_COLUMNS = ("_engine_s", "_tokens_evaluated", "_tokens_padding")


class AttributeStage:
    """One model replica. Each block it receives is attributed in one engine call per length
    bucket (with `compute.length_routing=none`: one call for the whole block, as read); the
    engine sorts and micro-batches inside a call."""

    def __init__(self, cfg: RunConfig, run_id: str):
        import torch

        device = "cuda" if cfg.compute.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.engine = AttributionEngine.load(cfg, device)  # imports attribution.method_modules
        self.loaded = self.engine.loaded
        self.cfg, self.run_id, self.calls = cfg, run_id, 0

    def __call__(self, table: pa.Table) -> pa.Table:
        self.calls += 1
        _maybe_inject_fault(self.calls)
        if self.cfg.compute.length_routing == "none" or table.num_rows == 0:
            return self._call(table)
        return pa.concat_tables(
            [self._call(table.take(rows)) for rows in bucket_groups(table)],
            promote_options="permissive",  # extras columns may differ (error-only groups)
        )

    def _call(self, table: pa.Table) -> pa.Table:
        """One engine call; the result table with `CALL_COLUMNS` appended."""
        labels = table.column("label").to_pylist() if "label" in table.column_names else None
        engine = self.engine
        before = (engine.tokens_evaluated, engine.tokens_padding)
        started = time.perf_counter()
        results = engine.run(rows_from_table(table), labels)
        totals = (
            time.perf_counter() - started,
            engine.tokens_evaluated - before[0],
            engine.tokens_padding - before[1],
        )
        provenance = {"run_id": self.run_id, "model_fingerprint": self.loaded.fingerprint}
        out = results_to_table(results, table, self.cfg.attribution.method, provenance)
        # Carrier rows (`skipped.CARRIER`) stand for no row attributed: no share of the call.
        real = ~is_carrier(out)
        share = real / max(int(real.sum()), 1)
        for name, total in zip(CALL_COLUMNS, totals, strict=True):
            out = out.append_column(name, pa.array(total * share))
        return out


def _maybe_inject_fault(calls: int) -> None:
    """Fault-injection hook for tests: kill this actor process on its Nth batch, once."""
    at, marker = os.environ.get(FAULT_EXIT_ENV), os.environ.get(FAULT_MARKER_ENV)
    if not at or not marker or calls != int(at) or Path(marker).exists():
        return
    Path(marker).write_text(str(os.getpid()))
    os._exit(17)


class WriteStage:
    """Write each block of results as one parquet file, named by its content so a retried block
    overwrites its own file instead of duplicating it; return a small per-row summary."""

    SUMMARY_COLUMNS = (
        "id",
        "source",
        "source_row",
        "status",
        "delta_rel",
        "n_steps",
        "converged",
        "fp32_recomputed",
        "pred",
        "target",
        "run_id",
        "model_fingerprint",
        "bucket",
        *CALL_COLUMNS,
        SKIPPED,
    )

    def __init__(self, output_uri: str, run_id: str | None = None):
        self.rundir, self.run_id = RunDir(output_uri), run_id  # run_id: fence on the lease

    def __call__(self, table: pa.Table) -> pa.Table:
        carrier = is_carrier(table)  # a resumed run's carriers and counts are not results
        rows = table.filter(pa.array(~carrier)) if carrier.any() else table
        internal = (*CALL_COLUMNS, SKIPPED)
        if rows.num_rows:
            self.rundir.write_part(
                rows.drop_columns([c for c in internal if c in rows.column_names]), self.run_id
            )
        return table.select([c for c in self.SUMMARY_COLUMNS if c in table.column_names])
