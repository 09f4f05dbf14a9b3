"""`raysattr aggregate`: statistics of an output directory written next to `attributions/`.

Files (columns in the README "Statistics"): position_stats.parquet, motif_stats.parquet,
seqlets.parquet, motifs.meme (DNA/protein), agreement_stats.parquet and layer_stats.parquet (when
those methods ran), stats.json, and stats_state.pkl (merged partials, for incremental audits).
Each file but the last two comes from an entry of `raysattr.stats.accumulators.ACCUMULATORS`.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict

import pyarrow as pa

from raysattr.config import StatsConfig
from raysattr.io.rundir import STATS_FILES, STATS_STATE, SUMMARY, RunDir
from raysattr.stats.accumulators import (
    ACCUMULATORS,
    Accumulator,
    Finished,
    output_files,
    state_version,
)
from raysattr.stats.database import check_database
from raysattr.stats.flat import SCHEME_ALPHABET, infer_alphabet
from raysattr.stats.passes import MapFn, StatsState, compute_state, file_batches, local_map
from raysattr.stats.settings import StatsSettings

STATS_JSON = "stats.json"

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
    for table in file_batches(files[0], output_uri, 256) if files else []:
        return infer_alphabet([s for s in table.column("sequence").to_pylist() if s])
    return "text"


def finalize(
    state: StatsState, accumulators: Sequence[Accumulator] = ACCUMULATORS
) -> dict[str, pa.Table | str | dict]:
    """Output tables/texts from a merged state: `{file name: pa.Table | str | dict}`, each
    accumulator's files and `stats.json` (its keys from the accumulators of pass 1, then the
    alphabet, class source and threshold, then those of pass 2, then files and settings).

    Raises:
        ValueError: no rows were aggregated, or `state` was built by other accumulators.
    """
    st, first, second = state.settings, state.first, state.second
    if first is None or second is None:
        raise ValueError("no ok attribution rows to aggregate")
    if state.version != state_version(accumulators):
        raise ValueError("the statistics state was built by other accumulators")
    done = Finished(st, state.threshold, {**first.values, **second.values})
    out: dict = {}
    summary: dict[int, dict] = {1: {}, 2: {}}
    for acc in accumulators:
        value = done.merged[acc.name]
        produced = acc.outputs(value, done)
        if unknown := set(produced) - set(acc.files):
            raise RuntimeError(f"accumulator {acc.name!r} wrote undeclared files {unknown}")
        out.update(produced)
        summary[acc.pass_no].update(acc.summary(value, done))
    out[STATS_JSON] = {
        **summary[1],
        "alphabet": st.alphabet,
        "class_source": st.class_by,
        "threshold": state.threshold,
        **summary[2],
        "files": len(state.files),
        "settings": asdict(st),
    }
    return out


def write_outputs(
    output_uri: str, outputs: dict, accumulators: Sequence[Accumulator] = ACCUMULATORS
) -> None:
    """Write finalized outputs, each whole (one PUT per file on S3), and remove statistics
    files of an earlier aggregation that this one does not produce (e.g. another method's
    layer_stats)."""
    out = RunDir(output_uri)
    for stale in dict.fromkeys([*STATS_FILES, *output_files(accumulators)]):
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


def load_state(
    output_uri: str, accumulators: Sequence[Accumulator] = ACCUMULATORS
) -> StatsState | None:
    """The saved state of a previous aggregation (None when absent, or built by accumulators
    of another `state_version`)."""
    data = RunDir(output_uri).read_bytes(STATS_STATE)
    if data is None:
        return None
    try:
        state = pickle.loads(data)
    except (AttributeError, ImportError, pickle.UnpicklingError) as exc:  # classes since renamed
        log.warning("raysattr: %s/%s not loaded: %s", output_uri, STATS_STATE, exc)
        return None
    return state if getattr(state, "version", None) == state_version(accumulators) else None


def compute_statistics(output_uri: str, cfg: StatsConfig, map_fn: MapFn = local_map) -> dict:
    """Compute and write every statistics file of `output_uri`; returns stats.json's content.

    Raises:
        ValueError: no attribution part files, or no ok rows in them.
    """
    started = time.time()
    if not RunDir(output_uri).part_files():
        raise ValueError(f"no attributions/part-*.parquet under {output_uri}")
    st = StatsSettings.from_config(cfg, resolve_alphabet(cfg.alphabet, output_uri))
    check_database(st.motif_database, st.alphabet)  # before the passes, not after them
    state = compute_state(output_uri, st, map_fn)
    outputs = finalize(state)
    outputs[STATS_JSON]["wall_s"] = time.time() - started
    write_outputs(output_uri, outputs)
    save_state(output_uri, state)
    return outputs[STATS_JSON]
