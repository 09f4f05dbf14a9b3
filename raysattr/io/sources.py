"""Input sources: list the files behind a URI (a manifest) and read each into standard columns.

Every reader yields Arrow tables with `id`, `sequence`, `label` (when configured), the passthrough
columns, `source` (file path) and `read_error` (null, or why this record could not be decoded).
A missing id becomes `<file name>:<row index>`, which is stable across reruns.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from raysattr.config import DataConfig
from raysattr.io.fs import filesystem

EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".fasta": "fasta",
    ".fa": "fasta",
    ".faa": "fasta",
    ".fna": "fasta",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class InputFile:
    """One input file as recorded in the manifest."""

    uri: str
    size: int
    version: str  # etag on S3, mtime locally: tells a later audit whether the file changed


def list_inputs(uri: str) -> list[InputFile]:
    """Files behind a path, directory, glob or `s3://` prefix, sorted by name.

    Raises:
        FileNotFoundError: nothing matches `uri` (the message names it).
    """
    fs, path = filesystem(uri)
    scheme = "s3://" if uri.startswith("s3://") else ""
    if any(ch in path for ch in "*?["):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = [p for p in fs.find(path) if _format_of(p) is not None]
    elif fs.exists(path):
        paths = [path]
    else:
        raise FileNotFoundError(f"data.uri={uri!r}: no such file, directory or prefix")
    if not paths:
        raise FileNotFoundError(f"data.uri={uri!r}: matches no input files")
    files = []
    for p in sorted(paths):
        info = fs.info(p)
        version = info.get("ETag") or info.get("etag") or str(info.get("mtime") or "")
        files.append(InputFile(scheme + p, int(info.get("size") or 0), str(version).strip('"')))
    return files


def _format_of(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    return EXTENSIONS.get(os.path.splitext(name)[1])


def resolve_format(uri: str, configured: str) -> str:
    """The configured format, or the one its extension names when `auto`."""
    if configured != "auto":
        return configured
    fmt = _format_of(uri)
    if fmt is None:
        raise ValueError(f"cannot tell the format of {uri!r}; set data.format")
    return fmt


def read_file(uri: str, cfg: DataConfig) -> Iterator[pa.Table]:
    """Read one file into standard-column tables of at most `CHUNK_ROWS` rows.

    Raises:
        ValueError: a configured column is missing, or the file cannot be parsed (message names
            the file and, for columns, lists those present).
    """
    fmt = resolve_format(uri, cfg.format)
    fs, path = filesystem(uri)
    reader = {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl, "fasta": _fasta}[fmt]
    offset = 0
    try:
        with fs.open(path, "rb") as handle:
            for table in reader(handle, cfg):
                yield standardise(table, cfg, uri, offset)
                offset += table.num_rows
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {uri} as {fmt}: {exc}") from exc


def _parquet(handle, cfg: DataConfig) -> Iterator[pa.Table]:
    for batch in pq.ParquetFile(handle).iter_batches(batch_size=CHUNK_ROWS):
        yield pa.Table.from_batches([batch])


def _csv(handle, cfg: DataConfig) -> Iterator[pa.Table]:
    strings = [c for c in (cfg.id_column, cfg.sequence_column) if c]
    reader = pacsv.open_csv(
        handle,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=pacsv.ParseOptions(delimiter=cfg.csv_delimiter),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(strings, pa.string())),
    )
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _jsonl(handle, cfg: DataConfig) -> Iterator[pa.Table]:
    rows = []
    for number, line in enumerate(io.TextIOWrapper(handle, encoding="utf-8"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
        if len(rows) == CHUNK_ROWS:
            yield pa.Table.from_pylist(rows)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows)


def _fasta(handle, cfg: DataConfig) -> Iterator[pa.Table]:
    """Multi-line FASTA; `key=value` words in a header become columns. A record whose bytes are
    not UTF-8 is kept with `read_error` set, never dropped."""
    rows: list[dict] = []
    for header, body in _fasta_records(handle):
        rows.append(_fasta_row(header, body))
        if len(rows) == CHUNK_ROWS:
            yield pa.Table.from_pylist(rows)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows)


def _fasta_records(handle) -> Iterator[tuple[bytes, list[bytes]]]:
    header, body = None, []
    for raw in handle:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b">"):
            if header is not None:
                yield header, body
            header, body = line[1:], []
        elif header is not None:
            body.append(line.strip())
        elif line.strip():
            raise ValueError("FASTA data before the first '>' header")
    if header is not None:
        yield header, body


def _fasta_row(header: bytes, body: list[bytes]) -> dict:
    head = header.decode("utf-8", errors="replace").split()
    row: dict = {"id": head[0] if head else None, "sequence": None, "read_error": None}
    for word in head[1:]:
        key, sep, value = word.partition("=")
        if sep:
            row[key] = value
    try:
        row["sequence"] = b"".join(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        row["read_error"] = f"sequence is not UTF-8 (byte {exc.start}: {exc.object[exc.start]:#x})"
    return row


def standardise(table: pa.Table, cfg: DataConfig, uri: str, offset: int) -> pa.Table:
    """Rename configured columns to `id`, `sequence`, `label`; keep passthrough columns."""
    is_fasta = resolve_format(uri, cfg.format) == "fasta"
    seq_col = "sequence" if is_fasta else cfg.sequence_column
    id_col = "id" if is_fasta else cfg.id_column
    if is_fasta and cfg.label_column and cfg.label_column not in table.column_names:
        # FASTA labels are optional header words (`label=1`); records without one get null.
        table = table.append_column(cfg.label_column, pa.nulls(table.num_rows, pa.int64()))
    wanted = [seq_col, *cfg.passthrough_columns] + ([cfg.label_column] if cfg.label_column else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{uri}: column(s) {', '.join(map(repr, missing))} not found; "
            f"columns present: {', '.join(table.column_names)}"
        )
    n = table.num_rows
    name = uri.rsplit("/", 1)[-1]
    if id_col in table.column_names:
        ids = table[id_col].cast(pa.string())
    else:
        ids = pa.array([f"{name}:{offset + i}" for i in range(n)], pa.string())
    columns = {"id": ids, "sequence": table[seq_col].cast(pa.string())}
    if cfg.label_column:
        columns["label"] = _labels(table[cfg.label_column], uri, cfg.label_column)
    for col in cfg.passthrough_columns:
        columns[col] = table[col]
    columns["source"] = pa.array([uri] * n, pa.string())
    errors = table["read_error"] if "read_error" in table.column_names else pa.nulls(n, pa.string())
    columns["read_error"] = errors.cast(pa.string())
    return pa.table(columns)


def _labels(column: pa.ChunkedArray, uri: str, name: str) -> pa.ChunkedArray:
    """Labels as int64 class indices (nulls kept); booleans and numeric strings are converted."""
    if pa.types.is_boolean(column.type):
        return column.cast(pa.int64())
    try:
        if pa.types.is_string(column.type):
            column = column.cast(pa.float64())
        return column.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"{uri}: label column {name!r} is not integer class indices: {exc}"
        ) from exc
