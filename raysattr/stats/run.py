"""`raysattr aggregate`: statistics of an output directory written next to `attributions/`.

Files (columns in the README "Statistics"): position_stats.parquet, motif_stats.parquet,
seqlets.parquet, motifs.meme (DNA/protein), agreement_stats.parquet and layer_stats.parquet (when
those methods ran), stats.json, and stats_state.pkl (merged partials, for incremental audits).
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import asdict

import pyarrow as pa

from raysattr.config import StatsConfig
from raysattr.io.rundir import STATS_FILES, STATS_STATE, SUMMARY, RunDir
from raysattr.stats.enrichment import motif_table
from raysattr.stats.flat import SCHEME_ALPHABET, infer_alphabet
from raysattr.stats.motifs import group_seqlets, to_meme
from raysattr.stats.passes import (
    STATE_VERSION,
    MapFn,
    StatsSettings,
    StatsState,
    compute_state,
    file_batches,
    local_map,
)

log = logging.getLogger("raysattr")


def resolve_alphabet(setting: str, output_uri: str) -> str:
    """The configured alphabet, else the run's tokenize scheme (summary.json), else the letters
    of the first rows."""
    if setting != "auto":
        return setting
    summary = RunDir(output_uri).read_json(SUMMARY)
    scheme = (summary or {}).get("config", {}).get("tokenize", {}).get("scheme")
    if scheme in SCHEME_ALPHABET:
        return SCHEME_ALPHABET[scheme]
    files = RunDir(output_uri).part_files()
    for table in file_batches(files[0], output_uri, 256, False) if files else []:
        return infer_alphabet([s for s in table.column("sequence").to_pylist() if s])
    return "text"


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
    """Write finalized outputs, each whole (one PUT per file on S3), and remove statistics
    files of an earlier aggregation that this one does not produce (e.g. another method's
    layer_stats)."""
    out = RunDir(output_uri)
    for stale in STATS_FILES:
        if stale not in outputs:
            out.remove(stale)
    for name, value in outputs.items():
        if isinstance(value, pa.Table):
            out.write_parquet(name, value)
        elif isinstance(value, dict):
            out.write_json(name, value)
        else:
            out.write_text(name, value)


def save_state(output_uri: str, state: StatsState) -> None:
    RunDir(output_uri).write_bytes(STATS_STATE, pickle.dumps(state))


def load_state(output_uri: str) -> StatsState | None:
    """The saved state of a previous aggregation (None when absent or of another version)."""
    data = RunDir(output_uri).read_bytes(STATS_STATE)
    if data is None:
        return None
    state = pickle.loads(data)
    return state if getattr(state, "version", None) == STATE_VERSION else None


def compute_statistics(output_uri: str, cfg: StatsConfig, map_fn: MapFn = local_map) -> dict:
    """Compute and write every statistics file of `output_uri`; returns stats.json's content.

    Raises:
        ValueError: no attribution part files, or no ok rows in them.
    """
    started = time.time()
    if not RunDir(output_uri).part_files():
        raise ValueError(f"no attributions/part-*.parquet under {output_uri}")
    st = StatsSettings.from_config(cfg, resolve_alphabet(cfg.alphabet, output_uri))
    state = compute_state(output_uri, st, map_fn)
    outputs = finalize(state)
    outputs["stats.json"]["wall_s"] = time.time() - started
    write_outputs(output_uri, outputs)
    save_state(output_uri, state)
    return outputs["stats.json"]
