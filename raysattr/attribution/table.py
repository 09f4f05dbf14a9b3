"""`RowResult`s -> the Arrow table of `attributions/` (schema: README "Outputs")."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raysattr.attribution.results import RowResult

# Columns the tokenize stage adds that are not carried into the output as-is.
_INTERNAL = {
    "content_ids",
    "spans",
    "residues",
    "status",
    "error",
    "bucket",
    "sequence",
    "n_unknown",
    "label",
    "id",
}
F32_LIST = pa.list_(pa.float32())


def results_to_table(
    results: list[RowResult], inputs: pa.Table, method: str, provenance: dict[str, str]
) -> pa.Table:
    """One output row per result; input columns (id, label, passthrough) repeat per target.

    Args:
        results: engine output; `row_index` points into `inputs`.
        inputs: the tokenized block (`id`, `sequence`, `residues`, `bucket`, ...).
        method: attribution method name, stored per row.
        provenance: string columns repeated on every row (`run_id`, `model_fingerprint`).
    """
    index = pa.array([r.row_index for r in results], pa.int64())
    picked = inputs.take(index)
    columns: dict[str, pa.Array] = {
        "id": picked.column("id"),
        "label": picked.column("label")
        if "label" in inputs.column_names
        else pa.nulls(len(results), pa.int64()),
        "pred": pa.array([r.pred for r in results], pa.int32()),
        "probs": pa.array([r.probs.astype(np.float32) for r in results], F32_LIST),
        "target": pa.array([r.target for r in results], pa.int32()),
        "method": pa.array([method] * len(results), pa.string()),
        "status": pa.array([r.status for r in results], pa.string()),
        "error": pa.array([r.error for r in results], pa.string()),
        "sequence": picked.column("residues"),
        "n_tokens": pa.array([max(len(r.token_ids) - 2, 0) for r in results], pa.int32()),
        "length": pa.array(
            [len(s or "") for s in picked.column("residues").to_pylist()], pa.int32()
        ),
        "bucket": picked.column("bucket"),
        "token_ids": pa.array([r.token_ids for r in results], pa.list_(pa.int32())),
        "token_attr": pa.array([r.token_attr for r in results], F32_LIST),
        "residue_attr": pa.array([r.residue_attr for r in results], F32_LIST),
        "attr_l2": pa.array([r.attr_l2 for r in results], pa.float32()),
        "delta": pa.array([r.delta for r in results], pa.float32()),
        "delta_rel": pa.array([r.delta_rel for r in results], pa.float32()),
        "n_steps": pa.array([r.n_steps for r in results], pa.int32()),
        "converged": pa.array([r.converged for r in results], pa.bool_()),
        "fp32_recomputed": pa.array([r.fp32_recomputed for r in results], pa.bool_()),
        "truncated": pa.array([r.truncated for r in results], pa.bool_()),
        "windows": pa.array([r.windows for r in results], pa.int32()),
        "n_unknown": pa.array([r.n_unknown for r in results], pa.int32()),
    }
    for key, value in provenance.items():
        columns[key] = pa.array([value] * len(results), pa.string())
    columns.update(_extras(results))
    for name in inputs.column_names:
        if name not in _INTERNAL and name not in columns:
            columns[name] = picked.column(name)
    return pa.table(columns)


def _extras(results: list[RowResult]) -> dict[str, pa.Array]:
    """Method extras as `extra_<name>` columns: scalars float32, vectors list<float32>,
    matrices list<list<float32>>. Error rows hold nulls."""
    keys = sorted({k for r in results for k in r.extras})
    out = {}
    for key in keys:
        sample = next(r.extras[key] for r in results if key in r.extras)
        values = [r.extras.get(key) for r in results]
        ndim = np.ndim(sample)
        if ndim == 0:
            out[f"extra_{key}"] = pa.array(values, pa.float32())
        elif ndim == 1:
            out[f"extra_{key}"] = pa.array(values, F32_LIST)
        else:
            rows = [None if v is None else [list(m) for m in v] for v in values]
            out[f"extra_{key}"] = pa.array(rows, pa.list_(F32_LIST))
    return out
