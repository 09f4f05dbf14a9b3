"""Input rows a run does not read, counted exactly on the rows that flow to the write stage.

A resumed run's read tasks skip the rows already written (`skip_done`). Each row they yield
carries, in the `SKIPPED` column, how many rows were skipped just before it in its file, and a
file's last row also those after it; a file with nothing left to read yields one carrier row
(`read_code` = `CARRIER`, an error row that is tokenized and attributed as nothing and never
written) holding its count. `WriteStage` passes the column on and `summary.RunSummary` sums it
once per input row into `summary.json` `rows.skipped_done`, so the counts reach the driver in
the packed per-block summaries, with no per-row state there.

With `data.limit`, a resumed run's rows to read pass `LimitStage` (one actor) instead of Ray
Data's `limit`, which would count the carriers as rows read and, by stopping the read tasks
early, leave it to timing which done rows were counted. Every file is then read to its end,
and the rows past the limit hand their counts on to a carrier: `skipped_done` is every input
row already written and `beyond_limit` every row still to do that the limit left unread, the
same in every run. No Ray import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SKIPPED = "_skipped_done"  # int64: rows skipped as already written, counted on this row
CARRIER = "_already_done"  # read_code, then status, of a file's carrier row


def skip_done(tables: Iterable[tuple[pa.Table, pa.BooleanArray]]) -> Iterator[pa.Table]:
    """The rows to read of one file's tables, each with the count of rows skipped as already
    written (`SKIPPED`) just before it in the file; the file's last row to read also counts
    those after it (one table is held back to find it); no row to read: one carrier row.

    Args:
        tables: (standard columns `[n]`, pending mask `[n]`) per chunk, in file order.
    """
    held, skipped, first = None, 0, None
    for table, pending in tables:
        keep = pending.to_numpy(zero_copy_only=False)
        done_before = np.cumsum(~keep)  # `[n]`: done rows up to each row, in this table
        at = done_before[keep]  # `[kept]`: done rows before each kept row
        counts = np.diff(at, prepend=0)
        if len(at):
            counts[0] += skipped
            skipped = int(done_before[-1] - at[-1])
        elif table.num_rows:
            skipped += int(done_before[-1])
        first = table.slice(0, 1) if first is None and table.num_rows else first
        kept = table.filter(pending).append_column(SKIPPED, pa.array(counts, pa.int64()))
        if kept.num_rows:
            if held is not None:
                yield held
            held = kept
    if held is not None:
        last = held.column(SKIPPED).to_numpy().copy()
        last[-1] += skipped
        yield held.set_column(held.num_columns - 1, SKIPPED, pa.array(last))
    elif skipped:
        yield carrier_row(first, skipped)


def carrier_row(row: pa.Table, skipped: int) -> pa.Table:
    """`row` (standard columns, `[1]`) turned into a carrier row of `skipped` rows already
    written: an error row with `read_code` = `CARRIER`."""
    row = row.drop_columns([SKIPPED]) if SKIPPED in row.column_names else row
    marks = {
        "read_error": "already written (summary.json rows.skipped_done); never written again",
        "read_code": CARRIER,
        "sequence": None,
    }
    for name, value in marks.items():
        at = row.column_names.index(name)
        row = row.set_column(at, name, pa.array([value], row.schema.field(name).type))
    return row.append_column(SKIPPED, pa.array([skipped], pa.int64()))


def is_carrier(table: pa.Table, column: str = "status") -> np.ndarray:
    """Mask `[n]` of the carrier rows of `table` (`column`: `read_code` before tokenizing)."""
    if SKIPPED not in table.column_names:
        return np.zeros(table.num_rows, bool)
    return pc.equal(table.column(column), CARRIER).fill_null(False).to_numpy(zero_copy_only=False)


class LimitStage:
    """`data.limit` for a resumed run: the first `limit` rows to read pass, then none; carrier
    rows pass uncounted, and the counts of the rows dropped go on in one more carrier. Stateful:
    it runs as one actor (`plan.limit_rows`)."""

    def __init__(self, limit: int):
        self.left = limit

    def __call__(self, table: pa.Table) -> pa.Table:
        """Rows of `table` (read rows with `SKIPPED`, `[n]`) that pass, plus the carrier."""
        carrier = is_carrier(table, "read_code")
        rank = np.cumsum(~carrier)  # `[n]`: rows to read up to each row
        keep = carrier | (rank <= self.left)
        self.left -= min(self.left, int(rank[-1]) if len(rank) else 0)
        if keep.all():
            return table
        dropped = table.filter(pa.array(~keep))
        passed = table.filter(pa.array(keep))
        moved = int(pc.sum(dropped.column(SKIPPED)).as_py() or 0)
        if not moved:
            return passed
        counts = carrier_row(dropped.slice(0, 1), moved)
        return pa.concat_tables([passed, counts], promote_options="permissive")
