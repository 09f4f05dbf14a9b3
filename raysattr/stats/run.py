"""`raysattr aggregate`: statistics of an output directory written next to `attributions/`.

Files (columns in the README "Statistics"): position_stats.parquet, motif_stats.parquet,
seqlets.parquet, motifs.meme (DNA/protein), agreement_stats.parquet and layer_stats.parquet (when
those methods ran), stats.json, and stats_state.pkl (merged partials, for incremental audits).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import time
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.config import StatsConfig
from raysattr.io.fs import filesystem
from raysattr.io.results import attribution_files
from raysattr.stats.aggregate import (
    STATE_FILE,
    STATE_VERSION,
    MapFn,
    StatsSettings,
    StatsState,
    compute_state,
    file_batches,
    local_map,
)
from raysattr.stats.enrichment import motif_table
from raysattr.stats.flat import SCHEME_ALPHABET, infer_alphabet
from raysattr.stats.motifs import group_seqlets, to_meme

log = logging.getLogger("raysattr")
OUTPUT_FILES = (
    "position_stats.parquet",
    "motif_stats.parquet",
    "seqlets.parquet",
    "agreement_stats.parquet",
    "layer_stats.parquet",
    "motifs.meme",
    "stats.json",
)


def resolve_alphabet(setting: str, output_uri: str) -> str:
    """The configured alphabet, else the run's tokenize scheme (summary.json), else the letters
    of the first rows."""
    if setting != "auto":
        return setting
    summary = read_json(output_uri, "summary.json")
    scheme = (summary or {}).get("config", {}).get("tokenize", {}).get("scheme")
    if scheme in SCHEME_ALPHABET:
        return SCHEME_ALPHABET[scheme]
    files = attribution_files(output_uri)
    for table in file_batches(files[0], output_uri, 256, False) if files else []:
        return infer_alphabet([s for s in table.column("sequence").to_pylist() if s])
    return "text"


def read_json(output_uri: str, name: str) -> dict | None:
    fs, root = filesystem(output_uri)
    path = f"{root.rstrip('/')}/{name}"
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return json.load(handle)


def finalize(state: StatsState) -> dict:
    """Output tables/texts from a merged state: `{file name: pa.Table | str | dict}`."""
    st, first, second = state.settings, state.first, state.second
    if first is None or second is None:
        raise ValueError("no ok attribution rows to aggregate")
    motifs_tbl = motif_table(
        second.kmers, second.class_rows, st.class_by, st.min_occurrences, st.alpha
    )
    seq_cols = second.seqlets.sorted_cols()
    motifs, motif_of = group_seqlets(
        seq_cols, motifs_tbl, st.alphabet, st.top_motifs, st.min_motif_seqlets
    )
    out: dict = {
        "position_stats.parquet": first.positions.table(),
        "motif_stats.parquet": motifs_tbl,
        "seqlets.parquet": second.seqlets.table(motif_of),
    }
    for name, table in (
        ("agreement_stats.parquet", first.agreement.table()),
        ("layer_stats.parquet", first.layers.table()),
    ):
        if table is not None:
            out[name] = table
    if st.alphabet != "text":
        out["motifs.meme"] = to_meme(motifs, st.alphabet, second.letters.astype(float))
    sig = motifs_tbl.filter(motifs_tbl.column("significant"))
    out["stats.json"] = {
        "rows": first.rows,
        "alphabet": st.alphabet,
        "class_source": st.class_by,
        "threshold": state.threshold,
        "n_seqlets": second.seqlets.n_found,
        "n_seqlets_kept": len(seq_cols.get("ids", [])),
        "n_significant": sig.num_rows,
        "top_motifs": sig.column("motif").to_pylist()[:10],
        "motifs": [
            {
                "name": m.name,
                "consensus": m.consensus,
                "seed": m.seed,
                "class": m.klass,
                "nsites": m.nsites,
            }
            for m in motifs
        ],
        "files": len(state.files),
        "settings": asdict(st),
    }
    return out


def write_outputs(output_uri: str, outputs: dict) -> None:
    """Write finalized outputs (parquet through a buffer, so S3 gets one PUT per file)."""
    fs, root = filesystem(output_uri)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    for stale in OUTPUT_FILES:
        if stale not in outputs and fs.exists(f"{root}/{stale}"):
            fs.rm(f"{root}/{stale}")
    for name, value in outputs.items():
        if isinstance(value, pa.Table):
            buf = io.BytesIO()
            pq.write_table(value, buf)
            data = buf.getvalue()
        elif isinstance(value, dict):
            data = json.dumps(value, indent=2, default=str).encode()
        else:
            data = value.encode()
        with fs.open(f"{root}/{name}", "wb") as handle:
            handle.write(data)


def save_state(output_uri: str, state: StatsState) -> None:
    fs, root = filesystem(output_uri)
    with fs.open(f"{root.rstrip('/')}/{STATE_FILE}", "wb") as handle:
        pickle.dump(state, handle)


def load_state(output_uri: str) -> StatsState | None:
    """The saved state of a previous aggregation (None when absent or of another version)."""
    fs, root = filesystem(output_uri)
    path = f"{root.rstrip('/')}/{STATE_FILE}"
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        state = pickle.load(handle)
    return state if getattr(state, "version", None) == STATE_VERSION else None


def aggregate(output_uri: str, cfg: StatsConfig, map_fn: MapFn = local_map) -> dict:
    """Compute and write every statistics file of `output_uri`; returns stats.json's content.

    Raises:
        ValueError: no attribution part files, or no ok rows in them.
    """
    started = time.time()
    if not attribution_files(output_uri):
        raise ValueError(f"no attributions/part-*.parquet under {output_uri}")
    st = StatsSettings.from_config(cfg, resolve_alphabet(cfg.alphabet, output_uri))
    state = compute_state(output_uri, st, map_fn)
    outputs = finalize(state)
    outputs["stats.json"]["wall_s"] = time.time() - started
    write_outputs(output_uri, outputs)
    save_state(output_uri, state)
    return outputs["stats.json"]
