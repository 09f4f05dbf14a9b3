"""Input sources: list the files behind a URI (a manifest) and read each into standard columns.

`read_file` yields Arrow tables with `id`, `sequence`, `label` (when configured), the passthrough
columns, `source` (file URI), `source_row` (0-based index of the record in its file, broken
records counted), `read_error` and `read_code` (null, or why this record could not be decoded
and its error code). A null, empty or blank id becomes `<file name>:<source_row>`, which is stable
across reruns. `*.gz` files are decompressed. The per-format readers, and the table of formats
(`readers.INPUT_FORMATS`) that the extension map and the valid `data.format` values come from, live
in `io/readers.py`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.config import DataConfig
from raysattr.errors import ConfigError, InputError, MissingInputError
from raysattr.io.fs import filesystem
from raysattr.io.readers import ERROR_COLUMNS, INPUT_FORMATS, InputFormat, Request, read_raw

log = logging.getLogger("raysattr")

AUTO = "auto"  # data.format: each file's format from its extension
FORMAT_CHOICES = (AUTO, *INPUT_FORMATS)  # the valid data.format values
EXTENSIONS = {ext: f.name for f in INPUT_FORMATS.values() for ext in f.extensions}
SKIPPED_NAMES_SHOWN = 5


def check_format(cfg: DataConfig) -> None:
    """Raise `ConfigError` unless `data.format` is `auto` or a format of `INPUT_FORMATS`."""
    if cfg.format not in FORMAT_CHOICES:
        raise ConfigError(f"data.format={cfg.format!r} is not one of {', '.join(FORMAT_CHOICES)}")


@dataclass(frozen=True)
class InputFile:
    """One input file as recorded in the manifest."""

    uri: str
    size: int
    version: str  # etag on S3, mtime locally: tells a later audit whether the file changed


def list_inputs(uri: str) -> list[InputFile]:
    """Files behind a path, directory, glob or `s3://` prefix, sorted by name.

    A directory yields the files with a known data extension (optionally `.gz`); the others are
    named in one warning on the `raysattr` logger, never silently ignored.

    Raises:
        MissingInputError: nothing matches `uri` (the message names it).
    """
    fs, path = filesystem(uri)
    scheme = "s3://" if uri.startswith("s3://") else ""
    if any(ch in path for ch in "*?["):
        paths = fs.glob(path)
    elif fs.isdir(path):
        found = fs.find(path)
        paths = [p for p in found if _format_of(p) is not None]
        _warn_skipped(uri, [p for p in found if _format_of(p) is None])
    elif fs.exists(path):
        paths = [path]
    else:
        raise MissingInputError("no such file, directory or prefix", f"data.uri={uri!r}")
    if not paths:
        raise MissingInputError(
            "no input files found",
            f"data.uri={uri!r}",
            f"data files end in {', '.join(sorted(EXTENSIONS))} (optionally .gz)",
        )
    files = []
    for p in sorted(paths):
        info = fs.info(p)
        version = info.get("ETag") or info.get("etag") or str(info.get("mtime") or "")
        files.append(InputFile(scheme + p, int(info.get("size") or 0), str(version).strip('"')))
    return files


def _warn_skipped(uri: str, skipped: list[str]) -> None:
    if not skipped:
        return
    names = sorted(p.rsplit("/", 1)[-1] for p in skipped)
    more = ", ..." if len(names) > SKIPPED_NAMES_SHOWN else ""
    log.warning(
        "raysattr: data.uri=%r: skipped %d file(s) with no known data extension: %s%s",
        uri,
        len(names),
        ", ".join(names[:SKIPPED_NAMES_SHOWN]),
        more,
    )


def _format_of(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    return EXTENSIONS.get(os.path.splitext(name)[1])


def resolve_format(uri: str, cfg: DataConfig) -> InputFormat:
    """`data.format`, or the format `uri`'s extension names when it is `auto`.

    Raises:
        ConfigError: `data.format` is not a known format (see `check_format`).
        InputError: `auto` and the extension names no known format.
    """
    check_format(cfg)
    name = _format_of(uri) if cfg.format == AUTO else cfg.format
    if name is None:
        raise InputError(
            "cannot tell the file's format from its name", f"in {uri}", "set data.format"
        )
    return INPUT_FORMATS[name]


def columns_of(fmt: InputFormat, cfg: DataConfig) -> tuple[str | None, str]:
    """The id and sequence columns of a file of format `fmt`: the format's own names where it
    has them (FASTA), else the configured ones."""
    return fmt.id_column or cfg.id_column, fmt.sequence_column or cfg.sequence_column


def request_for(uri: str, cfg: DataConfig, light: bool = False) -> Request:
    """What to read from `uri`: every configured column, or (`light`) only ids and labels.

    The configured sequence, label, passthrough and coordinate columns must exist either way,
    except the columns a format names itself (FASTA's id and sequence), and labels in the
    formats where they are optional (`InputFormat.optional_labels`): a file without any is
    unlabelled.
    """
    fmt = resolve_format(uri, cfg)
    id_col, seq_col = columns_of(fmt, cfg)
    label = [cfg.label_column] if cfg.label_column else []
    required = [
        *([] if fmt.sequence_column else [seq_col]),
        *([] if fmt.optional_labels else label),
        *cfg.carried_columns(),
    ]
    load = [id_col, *label] if light else [id_col, seq_col, *label, *cfg.carried_columns()]
    return Request(
        uri=uri,
        fmt=fmt.name,
        required=tuple(dict.fromkeys(required)),
        load=tuple(dict.fromkeys(c for c in load if c)),
        strings=tuple(c for c in (id_col, None if light else seq_col) if c),
        sequence=None if light else seq_col,
        csv_delimiter=_delimiter(uri, cfg),
    )


def _delimiter(uri: str, cfg: DataConfig) -> str:
    """`.tsv` files are tab-separated unless data.csv_delimiter says otherwise."""
    tsv = uri.lower().removesuffix(".gz").endswith(".tsv")
    return "\t" if tsv and cfg.csv_delimiter == "," else cfg.csv_delimiter


def read_file(uri: str, cfg: DataConfig) -> Iterator[pa.Table]:
    """Read one file into standard-column tables of at most `readers.CHUNK_ROWS` rows.

    Raises:
        InputError: a configured column is missing, a label is not a class index, or the file
            cannot be parsed; the message names the file (and the column, line or row).
    """
    offset = 0
    for table in read_raw(request_for(uri, cfg)):
        yield standardise(table, cfg, uri, offset)
        offset += table.num_rows


def standardise(table: pa.Table, cfg: DataConfig, uri: str, offset: int) -> pa.Table:
    """Raw reader columns -> `id`, `sequence`, `label`, passthrough, `source`, `source_row`,
    `read_error`, `read_code`; `offset` is the file row of the table's first row."""
    id_col, seq_col = columns_of(resolve_format(uri, cfg), cfg)
    n = table.num_rows
    columns = {
        "id": fill_ids(_column(table, id_col), uri, offset, n),
        "sequence": _strings(table[seq_col], uri, seq_col),
    }
    if cfg.label_column:
        raw = _column(table, cfg.label_column)
        raw = pa.nulls(n, pa.int64()) if raw is None else raw  # optional labels, none in the file
        columns["label"] = parse_labels(raw, uri, cfg.label_column, offset)
    for col in cfg.carried_columns():  # passthrough and coordinate columns
        columns[col] = table[col]
    columns["source"] = pa.array([uri] * n, pa.string())
    columns["source_row"] = pa.array(np.arange(offset, offset + n, dtype=np.int64))
    for name in ERROR_COLUMNS:
        given = _column(table, name)
        columns[name] = pa.nulls(n, pa.string()) if given is None else given
    return pa.table(columns)


def _column(table: pa.Table, name: str | None) -> pa.ChunkedArray | None:
    return table[name] if name and name in table.column_names else None


def _strings(column: pa.ChunkedArray, uri: str, name: str) -> pa.ChunkedArray:
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(
            f"column {name!r} cannot be read as text ({exc})", f"in {uri}", "store it as strings"
        ) from exc


def fill_ids(ids: pa.ChunkedArray | None, uri: str, offset: int, n: int) -> pa.Array:
    """Ids as strings; a missing column, or a null, empty or blank id, becomes
    `<file name>:<row>` (`row` = `offset` + index, the record's `source_row`)."""
    name = uri.rsplit("/", 1)[-1]
    if ids is not None:
        ids = _strings(ids, uri, "id").combine_chunks()
        blank = pc.equal(pc.utf8_trim_whitespace(ids), "").fill_null(False)
        missing = pc.or_(pc.is_null(ids), blank)
        if not pc.any(missing).as_py():
            return ids
    generated = pa.array([f"{name}:{offset + i}" for i in range(n)], pa.string())
    return generated if ids is None else pc.if_else(missing, generated, ids)


def parse_labels(column: pa.ChunkedArray, uri: str, name: str, offset: int) -> pa.Array:
    """Labels as int64 class indices. Null, NaN and blank strings become null; booleans and
    numeric strings are converted.

    Raises:
        InputError: a label is not a whole number (0.5, "cat"); names the file, the column and
            the first bad row (its `source_row`).
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):  # e.g. a pandas categorical saved to parquet
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_null(kind) or pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = _numeric_strings(column, uri, name, offset)
    elif not (pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise _bad_label(f"labels of type {kind}", uri, name, offset)
    column = column.cast(pa.float64())
    column = pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)
    # Whole numbers that int64 holds exactly; NaN is already null, so only 0.5, inf, 1e30 fail.
    whole = pc.and_(pc.less(pc.abs(column), 2.0**53), pc.equal(pc.floor(column), column))
    bad = np.flatnonzero(~whole.fill_null(True).to_numpy(zero_copy_only=False))
    if len(bad):
        value = column[int(bad[0])].as_py()
        raise _bad_label(f"label {value!r}", uri, name, offset + int(bad[0]))
    return column.cast(pa.int64())


def _numeric_strings(column: pa.Array, uri: str, name: str, offset: int) -> pa.Array:
    """Strings -> float64; blank strings become null."""
    stripped = pc.utf8_trim_whitespace(column)
    stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
    try:
        return stripped.cast(pa.float64())
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(stripped.to_pylist()):  # only on failure: find the first bad row
        try:
            pa.scalar(value, pa.string()).cast(pa.float64())
        except pa.ArrowInvalid:
            raise _bad_label(f"label {value!r}", uri, name, offset + i) from None
    raise _bad_label("a label", uri, name, offset)  # unreachable unless Arrow disagrees with itself


def _bad_label(what: str, uri: str, name: str, row: int) -> InputError:
    return InputError(
        f"{what} is not an integer class index",
        f"in {uri}, column {name!r}, row {row} (0-based, as in source_row)",
        "labels must be whole numbers 0, 1, ... or empty; set data.label_column=null for none",
    )
