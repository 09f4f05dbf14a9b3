"""Run configuration: a dataclass schema merged from defaults, a YAML file and dotlist overrides.

`load("configs/demo.yaml", ["attribution.n_steps=32"])` returns a validated, plain `RunConfig`
(no OmegaConf objects leak into the stages). Unknown keys and wrong types raise `ConfigError`,
which names the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from raysattr.errors import ConfigError

SCHEMES = ("residue", "kmer", "text")
LONG_POLICIES = ("truncate", "window", "error")
DTYPES = ("float32", "bfloat16")
BASELINES = ("pad", "mask", "unk")
OUTPUTS = ("prob", "logit")
DUPLICATE_POLICIES = ("error", "keep")
QUADRATURES = ("path", "fixed")
LENGTH_ROUTINGS = ("window", "sort", "groupby", "none")
INTEGRATION_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right")
_TARGET_RE = re.compile(r"^(predicted|label|all|class:\d+)$")


@dataclass
class CoordinatesConfig:
    """Input columns that place each sequence on a genome (`raysattr export bed|bedgraph`);
    they are carried into `attributions/` like passthrough columns."""

    chrom: str | None = None  # chromosome column
    start: str | None = None  # column: 0-based genome position of the sequence's first residue
    strand: str | None = None  # optional column: "-" = the sequence is the reverse complement

    def columns(self) -> list[str]:
        return [c for c in (self.chrom, self.start, self.strand) if c]


@dataclass
class DataConfig:
    """Where the sequences come from and which columns hold what."""

    uri: str = "outputs/demo/data/dna.parquet"
    format: str = "auto"
    id_column: str = "id"
    sequence_column: str = "sequence"
    label_column: str | None = "label"
    passthrough_columns: list[str] = field(default_factory=list)
    csv_delimiter: str = ","
    limit: int | None = None
    duplicate_ids: str = "error"  # error: later copies of an id become `duplicate_id` rows | keep
    coordinates: CoordinatesConfig = field(default_factory=CoordinatesConfig)

    def carried_columns(self) -> list[str]:
        """Input columns copied into the output: passthrough, then coordinate columns."""
        return list(dict.fromkeys([*self.passthrough_columns, *self.coordinates.columns()]))


@dataclass
class TokenizeConfig:
    """How sequences become tokens, and what happens past the model's maximum length."""

    scheme: str = "kmer"
    k: int = 6
    max_length: int | None = None  # content tokens; None = the model's limit
    long_policy: str = "truncate"
    window_stride: int | None = None  # content tokens between window starts; None = half a window
    uppercase: bool = True


@dataclass
class ModelConfig:
    """Which classifier to explain and how to load it."""

    path: str = "outputs/demo/model"
    tokenizer: str | None = None  # defaults to `path`
    dtype: str = "float32"  # compute dtype; bfloat16 = autocast
    revision: str | None = None
    allow_pickle: bool = False  # allow *.bin (pickle) weights when no safetensors exist
    trust_remote_code: bool = False
    cache_dir: str | None = None  # local cache for s3:// models


@dataclass
class AttributionConfig:
    """Which attribution method to run and how precisely."""

    method: str = "lig"
    target: str = "predicted"  # predicted | label | class:N | all
    output: str = "prob"  # prob | logit
    baseline: str = "pad"
    # path: per-row nodes where F changes, refined to delta_tolerance or max_evals (README
    # "Convergence"); fixed: Captum's integration_method with n_steps nodes for every row.
    quadrature: str = "path"
    max_evals: int = 128  # path: evaluations per row at most (forward+backward units)
    n_steps: int = 50  # fixed rule only
    integration_method: str = "gausslegendre"  # fixed rule only
    token_budget: int | None = None  # token evaluations per forward/backward chunk; None = learned
    max_batch_rows: int = 64
    delta_tolerance: float = 0.05  # |delta| relative to |F(x) - F(x')|
    adaptive_steps: bool = False  # fixed rule only: double n_steps on rows over tolerance
    max_steps: int = 400  # fixed rule only
    compare_method: str = "lig"  # attribution the `attention` method is compared against
    # Modules imported before methods are looked up, each registering methods of its own with
    # `@raysattr.attribution.registry.register` (e.g. "mylab.methods"); importable on every node.
    method_modules: list[str] = field(default_factory=list)


@dataclass
class ComputeConfig:
    """Ray resources: one model replica per actor."""

    min_actors: int = 1
    max_actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    rows_per_call: int = 256
    rows_per_block: int = 512
    address: str | None = None  # Ray address; None = RAY_ADDRESS or in-process
    resource_timeout_s: float = 300.0  # wait this long for the autoscaler to add CPUs/GPUs
    # How rows reach the attribution actors (README "Length routing"): window = sort each
    # window of `length_window_rows` tokenized rows by length (streaming); sort = one global
    # sort (materializes the tokenized set); groupby = one group per bucket (a whole bucket in
    # one task: small sets only); none = blocks as read.
    length_routing: str = "window"
    length_window_rows: int = 4096


@dataclass
class OutputConfig:
    """Where results go."""

    uri: str = "outputs/demo"
    mode: str = "resume"  # resume | overwrite
    lease_ttl_s: float = 120.0  # a lease whose heartbeat is older than this can be taken over
    # A local output.uri on a Ray cluster of several nodes is refused (rows would land on the
    # disks of whichever node wrote them) unless the path is a mount every node shares.
    shared_filesystem: bool = False


@dataclass
class StatsConfig:
    """Dataset-wide position and motif statistics (`raysattr aggregate`; README "Statistics")."""

    enabled: bool = True
    alphabet: str = "auto"  # auto | dna | protein | text (auto: from tokenize.scheme / letters)
    kmer_sizes: list[int] = field(default_factory=list)  # empty: dna 4-8, protein 2-4, text 1-2
    class_by: str = "label"  # label (pred where the label is null) | pred
    exclude_unconverged: bool = False  # leave out rows with converged = false
    position_bins: int = 20  # relative-position bins
    min_occurrences: int = 5  # k-mers seen fewer times are counted but not tested
    alpha: float = 0.05  # q-value threshold for `significant`
    seqlet_percentile: float = 95.0  # of smoothed |residue_attr| over the whole dataset
    seqlet_window: int = 5  # smoothing window (residues) before thresholding
    seqlet_min_length: int = 4
    seqlet_max_length: int = 30
    seqlet_flank: int = 3
    max_seqlets: int = 50_000  # seqlets.parquet keeps the strongest; the total is counted
    top_motifs: int = 20  # motifs (PWMs) written to motifs.meme
    min_motif_seqlets: int = 10
    both_strands: bool = True  # DNA: a k-mer and its reverse complement count as one
    # A motif is reported when its seqlets make at least this share of its class's seqlets and
    # it holds against shuffled seqlets at this q-value (README "Motifs").
    min_motif_share: float = 0.01
    motif_alpha: float = 0.05
    motif_database: str | None = None  # a MEME file (e.g. JASPAR): TOMTOM names every motif
    database_matches: int = 3  # best matches kept per motif (q < database_alpha)
    database_alpha: float = 0.05
    rows_per_batch: int = 4096  # rows per aggregation batch at most
    # residues per aggregation batch at most: what bounds a worker's memory (~270 bytes a
    # residue at peak), so 4,096 ProtBert rows of 2,000 aa become several batches
    residues_per_batch: int = 1_000_000


@dataclass
class QCConfig:
    """Faithfulness checks (deletion / insertion curves, AOPC) on a sample of rows -> qc.parquet."""

    enabled: bool = True
    sample_rows: int = 200
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5])
    random_repeats: int = 3
    seed: int = 0


@dataclass
class ReportConfig:
    """Self-contained `report.html`."""

    enabled: bool = True
    top_n: int = 20  # top and bottom sequences shown
    max_residues: int = 400  # residues drawn per sequence (longer ones are cut, and say so)


@dataclass
class DriftThresholds:
    """Audit checks (README "Audits"). A check finds drift (exit code 3) when a change is both
    significant (p-value < `alpha`, Bonferroni over the check's tests) and at least its
    threshold, in the change's own unit. Defaults from `benchmarks/audit.py` (NOTES.md)."""

    alpha: float = 0.001  # per check; an unchanged snapshot fails one with p <= 7 * alpha
    motif_support_change: float = 0.1  # share of a class's rows holding a significant k-mer
    # share of the k-mer's occurrences inside seqlets: each snapshot sets its own seqlet
    # threshold, which moves the share of every row at once (same-distribution pairs: up to 0.25)
    motif_seqlet_change: float = 0.3
    position_change: float = 0.1  # class mean score per relative bin / the profiles' peak |mean|
    pred_shift: float = 0.05  # share of rows per predicted class
    label_shift: float = 0.05  # share of rows per label
    delta_shift: float = 0.1  # share of rows with delta_rel >= each histogram edge
    error_rate_increase: float = 0.02  # share of error rows (an increase only)


@dataclass
class AuditConfig:
    """Scheduled audits: each writes `root/<audit_id>/` and compares it with the previous one."""

    root: str = "outputs/audits"
    audit_id: str | None = None  # None = UTC date-time, e.g. 20261121T030000
    previous: str | None = None  # None = the latest audit under `root` with an audit.json
    incremental: bool = False  # process only input files new since the previous audit
    top_k: int = 20  # significant k-mers of each side whose support and seqlet share are tested
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)


@dataclass
class RunConfig:
    """A whole run."""

    name: str = "demo"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Merge defaults, a YAML file and `key=value` overrides into a validated `RunConfig`.

    Raises:
        ConfigError: a key is unknown, a value has the wrong type or is out of range.
    """
    merged = OmegaConf.structured(RunConfig)
    layers = []
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append(("file " + str(path), lambda: OmegaConf.load(path)))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        layers.append((f"override {item!r}", lambda item=item: OmegaConf.from_dotlist([item])))
    for where, make in layers:
        try:
            merged = OmegaConf.merge(merged, make())
        except OmegaConfBaseException as exc:
            raise ConfigError(_explain(exc, where)) from None
    cfg = OmegaConf.to_object(merged)
    validate(cfg)
    return cfg


def _explain(exc: OmegaConfBaseException, where: str) -> str:
    key = getattr(exc, "full_key", None) or "?"
    message = str(exc).splitlines()[0]
    valid = _valid_keys(key)
    hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
    return f"{where}: key {key!r}: {message}{hint}"


def _valid_keys(full_key: str) -> list[str]:
    """Names of the fields next to `full_key` (the section it sits in)."""
    node: Any = RunConfig
    prefix = []
    for part in full_key.split(".")[:-1]:
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields or not isinstance(fields[part].default_factory, type):
            break
        node = fields[part].default_factory
        prefix.append(part)
    return [".".join([*prefix, f.name]) for f in dataclasses.fields(node)]


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")


def _check_positive(key: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def validate(cfg: RunConfig) -> None:
    """Check values the type system cannot (choices, ranges, consistency). Names that live in a
    table of a higher layer are checked against it there, and pre-flight calls those checks:
    attribution methods (`raysattr.attribution.registry.check_methods`) and input formats
    (`raysattr.io.sources.check_format`)."""
    _check_choice("tokenize.scheme", cfg.tokenize.scheme, SCHEMES)
    _check_choice("tokenize.long_policy", cfg.tokenize.long_policy, LONG_POLICIES)
    _check_choice("model.dtype", cfg.model.dtype, DTYPES)
    _check_choice("attribution.baseline", cfg.attribution.baseline, BASELINES)
    _check_choice("attribution.output", cfg.attribution.output, OUTPUTS)
    _check_choice(
        "attribution.integration_method", cfg.attribution.integration_method, INTEGRATION_METHODS
    )
    _check_choice("attribution.quadrature", cfg.attribution.quadrature, QUADRATURES)
    if cfg.attribution.adaptive_steps and cfg.attribution.quadrature == "path":
        raise ConfigError(
            "attribution.adaptive_steps=true doubles the fixed rule's n_steps, but "
            "attribution.quadrature=path (the default) refines each row on its own up to "
            "attribution.max_evals; remove adaptive_steps, or set attribution.quadrature=fixed"
        )
    _check_choice("output.mode", cfg.output.mode, ("resume", "overwrite"))
    _check_choice("data.duplicate_ids", cfg.data.duplicate_ids, DUPLICATE_POLICIES)
    _check_choice("compute.length_routing", cfg.compute.length_routing, LENGTH_ROUTINGS)
    _check_positive("compute.resource_timeout_s", cfg.compute.resource_timeout_s, allow_zero=True)
    coords = cfg.data.coordinates
    if (coords.chrom is None) != (coords.start is None) or (coords.strand and not coords.chrom):
        raise ConfigError(
            "data.coordinates needs both chrom and start (strand is optional)",
            f"data.coordinates.chrom={coords.chrom!r}, data.coordinates.start={coords.start!r}",
            "set both column names, or neither",
        )
    _check_positive("output.lease_ttl_s", cfg.output.lease_ttl_s)
    if not _TARGET_RE.match(cfg.attribution.target):
        raise ConfigError(
            f"attribution.target={cfg.attribution.target!r} is not one of "
            "predicted, label, all, class:N"
        )
    if cfg.attribution.target == "label" and not cfg.data.label_column:
        raise ConfigError("attribution.target='label' needs data.label_column")
    if not 1 <= cfg.tokenize.k <= 8:
        raise ConfigError(f"tokenize.k={cfg.tokenize.k} must be between 1 and 8")
    for key in (
        "tokenize.max_length",
        "tokenize.window_stride",
        "attribution.n_steps",
        "attribution.token_budget",
        "attribution.max_batch_rows",
        "attribution.max_steps",
        "attribution.max_evals",
        "compute.min_actors",
        "compute.rows_per_call",
        "compute.rows_per_block",
        "compute.length_window_rows",
        "data.limit",
    ):
        section, name = key.split(".")
        _check_positive(key, getattr(getattr(cfg, section), name))
    _check_positive("attribution.delta_tolerance", cfg.attribution.delta_tolerance)
    _check_positive("compute.gpus_per_actor", cfg.compute.gpus_per_actor, allow_zero=True)
    _check_positive("compute.cpus_per_actor", cfg.compute.cpus_per_actor, allow_zero=True)
    if cfg.compute.max_actors < cfg.compute.min_actors:
        raise ConfigError(
            f"compute.max_actors={cfg.compute.max_actors} < compute.min_actors="
            f"{cfg.compute.min_actors}"
        )
    if cfg.attribution.max_steps < cfg.attribution.n_steps:
        raise ConfigError("attribution.max_steps must be >= attribution.n_steps")
    _validate_stats(cfg.stats)
    _validate_qc(cfg.qc)
    _check_positive("audit.top_k", cfg.audit.top_k)
    _validate_thresholds(cfg.audit.thresholds)
    if cfg.audit.audit_id is not None and not re.fullmatch(r"[\w.-]+", cfg.audit.audit_id):
        raise ConfigError(f"audit.audit_id={cfg.audit.audit_id!r}: use letters, digits, _ . -")


def _validate_thresholds(t: DriftThresholds) -> None:
    if not 0 < t.alpha < 1:
        raise ConfigError(f"audit.thresholds.alpha={t.alpha} must be in (0, 1)")
    for name, value in vars(t).items():
        if name != "alpha" and not 0 <= value <= 1:
            raise ConfigError(
                f"audit.thresholds.{name}={value} must be in [0, 1] (a share or a fraction)"
            )


def _validate_stats(st: StatsConfig) -> None:
    _check_choice("stats.alphabet", st.alphabet, ("auto", "dna", "protein", "text"))
    _check_choice("stats.class_by", st.class_by, ("label", "pred"))
    if any(k < 1 or k > 12 for k in st.kmer_sizes):
        raise ConfigError(f"stats.kmer_sizes={st.kmer_sizes} must be between 1 and 12")
    if not 0 < st.seqlet_percentile < 100:
        raise ConfigError(f"stats.seqlet_percentile={st.seqlet_percentile} must be in (0, 100)")
    for name in ("alpha", "motif_alpha", "database_alpha"):
        if not 0 < getattr(st, name) < 1:
            raise ConfigError(f"stats.{name}={getattr(st, name)} must be in (0, 1)")
    if not 0 <= st.min_motif_share < 1:
        raise ConfigError(f"stats.min_motif_share={st.min_motif_share} must be in [0, 1)")
    for name in (
        "position_bins",
        "seqlet_window",
        "seqlet_min_length",
        "seqlet_max_length",
        "max_seqlets",
        "top_motifs",
        "min_motif_seqlets",
        "rows_per_batch",
        "residues_per_batch",
        "database_matches",
    ):
        _check_positive(f"stats.{name}", getattr(st, name))
    _check_positive("stats.seqlet_flank", st.seqlet_flank, allow_zero=True)
    _check_positive("stats.min_occurrences", st.min_occurrences, allow_zero=True)
    if st.seqlet_max_length < st.seqlet_min_length:
        raise ConfigError("stats.seqlet_max_length must be >= stats.seqlet_min_length")


def _validate_qc(qc: QCConfig) -> None:
    _check_positive("qc.sample_rows", qc.sample_rows)
    _check_positive("qc.random_repeats", qc.random_repeats)
    if not qc.fractions or any(not 0 < f <= 1 for f in qc.fractions):
        raise ConfigError(f"qc.fractions={qc.fractions} must be non-empty values in (0, 1]")


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (for provenance in outputs)."""
    return dataclasses.asdict(cfg)
