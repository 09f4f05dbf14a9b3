"""Pre-flight: everything a run can check on the driver before it clears anything or starts
Ray, so that a typo costs one line and a second, never earlier results.

Order: attribution methods registered and `data.format` known → S3 endpoints and buckets
reachable → every input file listed and scanned (readable, configured columns present, labels
valid, every id seen once to find duplicates) → model files and tokenizer fit the config
(without loading the weights) → the statistics' motif database readable (when one is set) →
output folder writable. Resources are checked later, once Ray
is up (`raysattr.pipeline.resources`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from raysattr.attribution.registry import check_methods, check_scheme
from raysattr.config import RunConfig
from raysattr.errors import InputError
from raysattr.io.fs import check_reachable
from raysattr.io.rundir import RunDir
from raysattr.io.scan import InputScan, scan_inputs
from raysattr.io.sources import InputFile, check_format, list_inputs
from raysattr.models.check import ModelFacts, check_model
from raysattr.stats.database import check_database
from raysattr.stats.flat import SCHEME_ALPHABET

log = logging.getLogger("raysattr")


@dataclass
class Checked:
    """What pre-flight found: the inputs to read, their scan, the model's facts."""

    files: list[InputFile]
    scan: InputScan
    model: ModelFacts


def preflight(cfg: RunConfig, files: list[InputFile] | None = None) -> Checked:
    """Check `cfg` end to end without side effects (but a probe file in the output).

    Args:
        cfg: the run.
        files: inputs to read instead of everything under `data.uri` (incremental audits).

    Raises:
        RaysattrError: the first problem found, as one line with the key and the fix.
    """
    check_methods(cfg.attribution)
    check_scheme(cfg.attribution.method, cfg.tokenize.scheme)
    check_format(cfg.data)
    for key, uri in (
        ("data.uri", cfg.data.uri),
        ("model.path", cfg.model.path),
        ("model.tokenizer", cfg.model.tokenizer or ""),
        ("output.uri", cfg.output.uri),
    ):
        check_reachable(str(uri), key)
    files = list_inputs(str(cfg.data.uri)) if files is None else files
    if not files:
        raise InputError("no input files to process", f"data.uri={cfg.data.uri!r}")
    scan = scan_inputs(files, cfg.data)
    if scan.total_rows == 0:
        raise InputError(
            f"the input holds no rows ({len(files)} file(s), all empty)",
            f"data.uri={cfg.data.uri!r}",
            "check that the files are the ones you meant",
        )
    model = check_model(cfg)
    if cfg.stats.enabled:  # a database that cannot be read fails now, not after attribution
        scheme_alphabet = SCHEME_ALPHABET.get(cfg.tokenize.scheme, "auto")
        alphabet = scheme_alphabet if cfg.stats.alphabet == "auto" else cfg.stats.alphabet
        check_database(cfg.stats.motif_database, alphabet)
    RunDir(str(cfg.output.uri)).probe_writable()
    log.info(
        "raysattr: pre-flight ok: %d file(s), %d rows (%d duplicate ids), model %s",
        len(files),
        scan.total_rows,
        scan.n_duplicate_ids,
        cfg.model.path,
    )
    return Checked(files, scan, model)
