"""Per-format readers: one input file in, raw Arrow tables out, one row per record.

`INPUT_FORMATS` (at the end) is the one table of input formats: name, reader, file extensions and
what the format holds natively. `io.sources` derives the extension map and the valid `data.format`
values from it; adding a format is one reader function and one entry there.

A reader loads only the columns it is asked for, checks that the configured columns exist
(`InputError` listing those present) and never drops a record: one it cannot decode becomes a row
with `read_error` (why) and `read_code` (an error code) set. `sources.standardise` turns raw tables
into the standard columns; `scan.scan_inputs` reads the same raw tables with fewer columns.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from raysattr.errors import InputError
from raysattr.io.fs import filesystem

CHUNK_ROWS = 4096
FASTA_ID, FASTA_SEQUENCE = "id", "sequence"  # FASTA has no column names: these are implicit
INVALID_ENCODING, INVALID_RECORD = "invalid_encoding", "invalid_record"
ERROR_COLUMNS = ("read_error", "read_code")


@dataclass(frozen=True)
class Request:
    """What to read from one file.

    Attributes:
        uri: the file; every error names it.
        fmt: a name in `INPUT_FORMATS`.
        required: columns the file must hold (sequence, label, passthrough).
        load: columns to load when present (a missing id column is filled in later).
        strings: loaded columns kept as strings whatever they look like (id, sequence).
        sequence: the sequence column when it is loaded; a JSON value there that is not a string
            makes the record an error row.
        csv_delimiter: CSV field separator.
    """

    uri: str
    fmt: str
    required: tuple[str, ...]
    load: tuple[str, ...]
    strings: tuple[str, ...] = ()
    sequence: str | None = None
    csv_delimiter: str = ","


def read_raw(req: Request) -> Iterator[pa.Table]:
    """Raw tables of at most `CHUNK_ROWS` records of `req.uri`, in file order, each holding the
    loaded columns present plus `read_error` and `read_code`.

    Raises:
        InputError: the file cannot be opened, decompressed or parsed, or lacks a required
            column; the message names the file (and the line or row where known).
    """
    fmt = INPUT_FORMATS[req.fmt]
    try:
        with open_input(req.uri, fmt.seekable) as handle:
            yield from fmt.read(handle, req)
    except InputError:
        raise
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"cannot read it as {req.fmt}: {detail}",
            f"in {req.uri}",
            "check the file, or set data.format if its extension is misleading",
        ) from exc


@contextmanager
def open_input(uri: str, seekable: bool = False) -> Iterator[BinaryIO]:
    """A binary handle on `uri`, gunzipped when the name ends in `.gz` (into memory when
    `seekable`: the reader seeks)."""
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as raw:
        if not uri.lower().endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw) as unzipped:
            # e.g. Parquet keeps its footer at the end and its reader seeks: gunzip into memory.
            yield io.BytesIO(unzipped.read()) if seekable else unzipped


def check_columns(req: Request, present: list[str]) -> None:
    """Raise `InputError` naming the missing required columns and listing those present."""
    missing = [c for c in req.required if c not in present]
    if not missing:
        return
    fix = (
        "set data.sequence_column, data.label_column, data.passthrough_columns or "
        "data.coordinates to match"
    )
    other = [sep for sep in ";\t|," if sep != req.csv_delimiter and sep in "".join(present)]
    if INPUT_FORMATS[req.fmt].delimited and len(present) == 1 and other:
        fix = f"set data.csv_delimiter: the header looks {other[0]!r}-separated"
    raise InputError(
        f"column(s) {', '.join(map(repr, missing))} not found",
        f"in {req.uri} (columns present: {', '.join(present) or 'none'})",
        fix,
    )


def with_error_columns(table: pa.Table) -> pa.Table:
    """`table` plus null `read_error` and `read_code` columns (no record failed)."""
    for name in ERROR_COLUMNS:
        table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def _parquet(handle: BinaryIO, req: Request) -> Iterator[pa.Table]:
    file = pq.ParquetFile(handle)
    present = file.schema_arrow.names
    check_columns(req, present)
    load = [c for c in req.load if c in present]
    # With no columns to load, the batches still carry their row counts.
    for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=load):
        yield with_error_columns(pa.Table.from_batches([batch]))


def _csv(handle: BinaryIO, req: Request) -> Iterator[pa.Table]:
    parse = pacsv.ParseOptions(delimiter=req.csv_delimiter)
    present = _csv_header(handle, parse)
    check_columns(req, present)
    load = [c for c in req.load if c in present]
    # An empty include list would mean "all columns": parse one column just to count rows.
    include = load or present[:1]
    reader = pacsv.open_csv(
        handle,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=parse,
        convert_options=pacsv.ConvertOptions(
            include_columns=include,
            column_types={c: pa.string() for c in req.strings if c in include},
        ),
    )
    for batch in reader:
        yield with_error_columns(pa.Table.from_batches([batch]).select(load))


def _csv_header(handle: BinaryIO, parse: pacsv.ParseOptions) -> list[str]:
    """Column names from the first line, without parsing the rest (then rewinds)."""
    head = handle.read(1 << 20)
    handle.seek(0)
    first = head.split(b"\n", 1)[0] + b"\n"
    return pacsv.read_csv(io.BytesIO(first), parse_options=parse).column_names


class _Chunk:
    """Column values of up to `CHUNK_ROWS` JSONL or FASTA records, and their record errors."""

    def __init__(self, req: Request):
        self.req = req
        self.values: dict[str, list] = {c: [] for c in req.load}
        self.errors: list[str | None] = []
        self.codes: list[str | None] = []

    def __len__(self) -> int:
        return len(self.errors)

    def add(self, record: dict, where: str, error: str | None = None, code: str | None = None):
        """Append one record (`where`, e.g. "line 7", prefixes its error message)."""
        for name, values in self.values.items():
            value = record.get(name)
            if name in self.req.strings and value is not None and not isinstance(value, str):
                if name == self.req.sequence:
                    error = f"{where}: {name!r} is a JSON {type(value).__name__}, not a string"
                    code, value = INVALID_RECORD, None
                else:  # a numeric id: keep its JSON spelling
                    value = json.dumps(value)
            values.append(value)
        self.errors.append(error)
        self.codes.append(code)

    def table(self) -> pa.Table:
        columns = {c: _array(v, c in self.req.strings) for c, v in self.values.items()}
        columns["read_error"] = pa.array(self.errors, pa.string())
        columns["read_code"] = pa.array(self.codes, pa.string())
        return pa.table(columns)


def _array(values: list, as_string: bool) -> pa.Array:
    """Values as one Arrow array; mixed JSON types fall back to strings (labels then parse)."""
    if not as_string:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            pass
    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string()
    )


def _jsonl(handle: BinaryIO, req: Request) -> Iterator[pa.Table]:
    """One record per non-blank line. A bad line is an error row, unless it is the first: then
    the file is not JSON Lines at all (e.g. a pretty-printed `meta.json` beside the data)."""
    chunk, seen, row = _Chunk(req), set(), 0
    for line_no, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        record, problem = _json_record(raw, line_no)
        if problem and row == 0:
            raise _not_json_lines(req.uri, problem)
        row += 1
        if problem:
            chunk.add({}, f"line {line_no}", problem, INVALID_RECORD)
        else:
            seen.update(record)
            chunk.add(record, f"line {line_no}")
        if len(chunk) == CHUNK_ROWS:
            yield chunk.table()
            chunk = _Chunk(req)
    if len(chunk):
        yield chunk.table()
    if row:
        check_columns(req, sorted(seen))


def _json_record(raw: bytes, line_no: int) -> tuple[dict, str | None]:
    """The line's JSON object, or `({}, why not)`."""
    try:
        record = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for non-UTF-8 bytes
        return {}, f"line {line_no} is not valid JSON: {exc}"
    if not isinstance(record, dict):
        return {}, f"line {line_no} is not valid JSON: a {type(record).__name__}, not an object"
    return record, None


def _not_json_lines(uri: str, problem: str) -> InputError:
    folder = uri.rsplit("/", 1)[0] if "/" in uri else "."
    return InputError(
        f"not a JSON Lines file (one JSON object per line): its first record fails ({problem})",
        f"in {uri}",
        f"remove it from the input folder, or set data.uri to a glob of the data files only "
        f"(e.g. data.uri='{folder}/*.parquet')",
    )


def _fasta(handle: BinaryIO, req: Request) -> Iterator[pa.Table]:
    """Multi-line FASTA; `key=value` words in a header become columns. A record whose bytes are
    not UTF-8 is kept with `read_error` set, never dropped."""
    chunk, seen, rows = _Chunk(req), set(), 0
    with_body = FASTA_SEQUENCE in req.load
    for header, body in _fasta_records(handle, req.uri, with_body):
        record, error = _fasta_record(header, body if with_body else None, rows)
        seen.update(record)
        chunk.add(record, f"record {rows}", error, INVALID_ENCODING if error else None)
        rows += 1
        if len(chunk) == CHUNK_ROWS:
            yield chunk.table()
            chunk = _Chunk(req)
    if len(chunk):
        yield chunk.table()
    if rows:
        check_columns(req, sorted(seen | {FASTA_ID, FASTA_SEQUENCE}))


def _fasta_records(handle, uri: str, with_body: bool) -> Iterator[tuple[bytes, list[bytes]]]:
    header, body = None, []
    for line_no, raw in enumerate(handle, start=1):
        line = raw.rstrip(b"\r\n")
        if line.startswith(b">"):
            if header is not None:
                yield header, body
            header, body = line[1:], []
        elif header is not None:
            if with_body:
                body.append(line.strip())
        elif line.strip():
            raise InputError(
                f"line {line_no} holds sequence data before the first '>' header",
                f"in {uri}",
                "a FASTA file starts with a '>' line; check the file, or set data.format",
            )
    if header is not None:
        yield header, body


def _fasta_record(header: bytes, body: list[bytes] | None, row: int) -> tuple[dict, str | None]:
    """`{id, sequence, key: value...}` and the record's error (non-UTF-8 sequence bytes)."""
    head = header.decode("utf-8", errors="replace").split()
    record: dict = {}
    for word in head[1:]:
        key, sep, value = word.partition("=")
        if sep:
            record[key] = value
    record[FASTA_ID] = head[0] if head else None  # after the words: `id=` cannot replace it
    if body is None:
        return record, None
    try:
        record[FASTA_SEQUENCE] = b"".join(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        return record, f"record {row}: sequence is not UTF-8 (byte {exc.start}: {byte:#x})"
    return record, None


@dataclass(frozen=True)
class InputFormat:
    """One input format.

    Attributes:
        name: the `data.format` value.
        read: `(binary handle, Request) -> raw tables` (see `read_raw`).
        extensions: file name endings (lower case, before an optional `.gz`) that mean it.
        id_column, sequence_column: the columns the format itself names (FASTA: the header's
            first word and the sequence lines), used whatever `data.id_column` and
            `data.sequence_column` say; None: the configured names.
        optional_labels: records may lack the label (no schema: FASTA `label=` words, JSON keys);
            a file without any is unlabelled instead of missing a column.
        seekable: the reader seeks, so a `.gz` file is gunzipped into memory first.
        delimited: fields are split by `data.csv_delimiter` (a one-column header is checked
            for another separator).
    """

    name: str
    read: Callable[[BinaryIO, Request], Iterator[pa.Table]]
    extensions: tuple[str, ...]
    id_column: str | None = None
    sequence_column: str | None = None
    optional_labels: bool = False
    seekable: bool = False
    delimited: bool = False


INPUT_FORMATS: dict[str, InputFormat] = {
    f.name: f
    for f in (
        InputFormat("parquet", _parquet, (".parquet", ".pq"), seekable=True),
        InputFormat("csv", _csv, (".csv", ".tsv"), delimited=True),
        InputFormat(
            "fasta",
            _fasta,
            (".fasta", ".fa", ".faa", ".fna"),
            id_column=FASTA_ID,
            sequence_column=FASTA_SEQUENCE,
            optional_labels=True,
        ),
        InputFormat("jsonl", _jsonl, (".jsonl", ".json", ".ndjson"), optional_labels=True),
    )
}
