"""Which rows the faithfulness check uses, and reading them: the `qc.sample_rows` eligible rows
with the smallest seeded hash of (id, target), chosen in one streaming pass over the key columns
and read in a second, filtered one."""

from __future__ import annotations

import hashlib
import heapq

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from raysattr.io.results import attributions_dataset

REQUIRED_COLUMNS = ("id", "target", "status", "token_ids", "token_attr")
OPTIONAL_COLUMNS = ("length", "n_tokens", "probs", "model_fingerprint")


def sample_key(seed: int, row_id: str, target: int) -> int:
    """The seeded 64-bit hash that orders rows for sampling (and seeds a row's random orders)."""
    digest = hashlib.blake2b(f"{seed}\x1f{row_id}\x1f{target}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def sample_keys(output_uri: str, sample_rows: int, seed: int) -> tuple[list, int, dict]:
    """First pass: choose the sample from the key columns only, streaming over the part files.

    Returns:
        `(keys, n_eligible, skipped)`: the chosen `(id, target)` pairs in sample order, the
        number of eligible rows, and reason -> rows not eligible.

    Raises:
        ValueError: no attributions under `output_uri`, or a required column is missing.
    """
    dataset = _open(output_uri)
    has_windows = "windows" in dataset.schema.names
    columns = ["id", "target", "status"] + (["windows"] if has_windows else [])
    heap: list[tuple[int, str, int]] = []  # max-heap (negated keys) of the smallest hashes
    skipped: dict[str, int] = {}
    n_eligible = 0
    for batch in dataset.to_batches(columns=columns):
        cols = [batch.column(c).to_pylist() for c in columns]
        windows = cols[3] if has_windows else [1] * batch.num_rows
        for row_id, target, status, n_win in zip(cols[0], cols[1], cols[2], windows, strict=True):
            reason = _ineligible(status, n_win)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            n_eligible += 1
            item = (-sample_key(seed, row_id, target), row_id, int(target))
            if len(heap) < sample_rows:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    keys = [(row_id, target) for _, row_id, target in sorted(heap, reverse=True)]
    return keys, n_eligible, skipped


def _open(output_uri: str) -> ds.Dataset:
    """The run's attributions, checked for the columns the sample needs."""
    dataset = attributions_dataset(output_uri)
    if dataset is None:
        raise ValueError(
            f"no attributions under {output_uri!r}/attributions (no part-*.parquet files): "
            "run `raysattr run` first"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"{output_uri!r}/attributions lacks column(s) {', '.join(missing)}")
    return dataset


def _ineligible(status: str | None, windows: int | None) -> str | None:
    if status != "ok":
        return f"status:{status}"
    if windows is not None and windows > 1:
        return "windowed"
    return None


def read_sample(output_uri: str, keys: list[tuple[str, int]]) -> pa.Table:
    """Second pass: the chosen rows (one per key, in `keys` order), filtered while streaming."""
    dataset = _open(output_uri)
    optional = [c for c in OPTIONAL_COLUMNS if c in dataset.schema.names]
    ids = pa.array(sorted({k[0] for k in keys}), pa.string())
    table = dataset.to_table(
        columns=[*REQUIRED_COLUMNS, *optional],
        filter=pc.field("id").isin(ids) & (pc.field("status") == "ok"),
    )
    position = {key: i for i, key in enumerate(keys)}
    first: dict[int, int] = {}  # duplicate ids: the first copy of a key wins
    found = zip(table["id"].to_pylist(), table["target"].to_pylist(), strict=True)
    for j, key in enumerate(found):
        if key in position and position[key] not in first:
            first[position[key]] = j
    return table.take(pa.array([first[i] for i in sorted(first)], pa.int64()))
