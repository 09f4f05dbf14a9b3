"""What the exports read from a run folder (attribution rows, seqlets, genome coordinates) and
how they write their files (user-given paths, local or S3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysattr.config import CoordinatesConfig, RunConfig
from raysattr.errors import ConfigError, OutputError
from raysattr.io.fs import filesystem
from raysattr.io.results import attributions_dataset
from raysattr.io.rundir import SUMMARY, RunDir

SEQLETS = "seqlets.parquet"
HYPOTHETICAL = "extra_hypothetical"  # the `ism` method's [length, letters] scores


def read_rows(output: str, columns: list[str], ids: list[str] | None = None) -> pa.Table:
    """The ok attribution rows of `output`, one per sequence: with several targets per id
    (`attribution.target=all`) the row explaining the sequence's class (its label, else its
    prediction), as the statistics count them.

    Args:
        output: the run folder.
        columns: columns wanted besides `id`; missing optional ones (`extra_*`, coordinates)
            are left out.
        ids: only these ids (None: every row).

    Raises:
        OutputError: the folder holds no attributions or no ok row.
    """
    dataset = attributions_dataset(output)
    if dataset is None:
        raise OutputError("no attributions", f"OUTPUT={output!r}", "give a run's output.uri")
    present = set(dataset.schema.names)
    wanted = ["id", "label", "pred", "target", *columns]
    keep = pc.field("status") == "ok"
    if ids is not None:
        keep = keep & pc.field("id").isin(pa.array(ids, pa.string()))
    table = dataset.to_table(
        columns=[c for c in dict.fromkeys(wanted) if c in present], filter=keep
    )
    if not table.num_rows:
        raise OutputError("no ok attribution rows to export", f"OUTPUT={output!r}")
    ids_col = table.column("id")
    if pc.count_distinct(ids_col).as_py() == table.num_rows:
        return table
    label = table.column("label") if "label" in table.column_names else table.column("pred")
    own = pc.coalesce(label.cast(pa.int64()), table.column("pred").cast(pa.int64()))
    return table.filter(pc.equal(table.column("target").cast(pa.int64()), own))


def read_seqlets(output: str) -> pa.Table:
    """`seqlets.parquet` of `output`.

    Raises:
        OutputError: there are no statistics, or they found no seqlet.
    """
    table = RunDir(output).read_parquet(SEQLETS)
    if table is None:
        raise OutputError(
            f"no {SEQLETS}", f"OUTPUT={output!r}", "run `raysattr aggregate OUTPUT` first"
        )
    if not table.num_rows:
        raise OutputError(
            f"{SEQLETS} holds no seqlet",
            f"OUTPUT={output!r}",
            "lower stats.seqlet_percentile and rerun `raysattr aggregate OUTPUT`, or export "
            "--windows crop",
        )
    return table


def coordinates(output: str, cfg: RunConfig) -> CoordinatesConfig:
    """`data.coordinates` of the given config, else of the run's own (its summary.json)."""
    if cfg.data.coordinates.chrom:
        return cfg.data.coordinates
    summary = RunDir(output).read_json(SUMMARY) or {}
    recorded = summary.get("config", {}).get("data", {}).get("coordinates") or {}
    return CoordinatesConfig(**{k: recorded.get(k) for k in ("chrom", "start", "strand")})


@dataclass
class Placement:
    """Where each sequence lies on the genome: id -> (chromosome, 0-based start, minus strand)."""

    where: dict[str, tuple[str, int, bool]]

    @classmethod
    def of(cls, table: pa.Table, coords: CoordinatesConfig) -> Placement:
        """From the coordinate columns of `table` (rows from `read_rows`).

        Raises:
            ConfigError: a configured coordinate column is not in the output.
        """
        for key, column in (("chrom", coords.chrom), ("start", coords.start)):
            if column not in table.column_names:
                raise ConfigError(
                    f"coordinate column {column!r} is not in the output's attributions",
                    f"data.coordinates.{key}",
                    "name a column of the input and rerun, or fix data.coordinates",
                )
        chrom = table.column(coords.chrom).cast(pa.string()).to_pylist()
        start = table.column(coords.start).cast(pa.int64()).to_pylist()
        strand = [None] * len(chrom)
        if coords.strand and coords.strand in table.column_names:
            strand = table.column(coords.strand).cast(pa.string()).to_pylist()
        ids = table.column("id").to_pylist()
        where = {
            i: (c, s, d == "-")
            for i, c, s, d in zip(ids, chrom, start, strand, strict=True)
            if c is not None and s is not None
        }
        return cls(where)

    def interval(
        self, row_id: str, start: int, end: int, length: int
    ) -> tuple[str, int, int, bool]:
        """Genome `(chrom, start, end, minus)` of residues `[start, end)` of a sequence of
        `length` residues (a minus-strand sequence is read from its end)."""
        chrom, origin, minus = self.where[row_id]
        if minus:
            return chrom, origin + length - end, origin + length - start, True
        return chrom, origin + start, origin + end, False


def needs_coordinates(coords: CoordinatesConfig, kind: str) -> None:
    """Raises ConfigError when `kind` needs coordinate columns and none are configured."""
    if not coords.chrom:
        raise ConfigError(
            f"export {kind} needs genome coordinates, and none are configured",
            "data.coordinates",
            "set data.coordinates.chrom and data.coordinates.start (input columns) for the run, "
            "or pass them to export with --config / overrides",
        )


def write_file(uri: str, data: bytes) -> str:
    """Write `data` to the user-given `uri` (local path or s3://) whole; returns the uri."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    try:
        if parent and not uri.startswith("s3://"):
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, data)
    except OSError as exc:
        raise OutputError(f"cannot write the export ({exc})", f"DEST={uri!r}") from exc
    return uri


def list_arrays(table: pa.Table, name: str) -> list[np.ndarray]:
    """A list column (`residue_attr`) as one float32 array per row (views, no Python floats)."""
    column = table.column(name).combine_chunks()
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]


def matrix_arrays(table: pa.Table, name: str) -> list[np.ndarray]:
    """A list<list<float>> column (`extra_hypothetical`) as one `[n, width]` array per row."""
    column = table.column(name).combine_chunks()
    outer = column.offsets.to_numpy()
    inner = column.values.offsets.to_numpy()
    values = column.values.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    out = []
    for i in range(len(column)):
        a, b = inner[outer[i]], inner[outer[i + 1]]
        n = outer[i + 1] - outer[i]
        out.append(values[a:b].reshape(n, -1) if n else np.zeros((0, 0), np.float32))
    return out
