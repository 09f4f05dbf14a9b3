"""`StatsSettings`: the statistics' configuration with the alphabet and k-mer sizes resolved, as
every accumulator and pass reads it (frozen: states computed with other settings never merge)."""

from __future__ import annotations

from dataclasses import dataclass

from raysattr.config import StatsConfig
from raysattr.stats.flat import DEFAULT_KMER_SIZES
from raysattr.stats.kmers import check_key_space
from raysattr.stats.seqlets import SeqletSettings
from raysattr.stats.strands import uses_both_strands


@dataclass(frozen=True)
class StatsSettings:
    """`StatsConfig` with the alphabet and k-mer sizes resolved; `both_strands` is True for DNA
    with `stats.both_strands` only."""

    alphabet: str
    kmer_sizes: tuple[int, ...]
    class_by: str
    position_bins: int
    seqlet_percentile: float
    seqlet: SeqletSettings
    max_seqlets: int
    min_occurrences: int
    alpha: float
    top_motifs: int
    min_motif_seqlets: int
    rows_per_batch: int
    both_strands: bool = False
    exclude_unconverged: bool = False
    min_motif_share: float = 0.01
    motif_alpha: float = 0.05
    motif_database: str | None = None
    database_matches: int = 3
    database_alpha: float = 0.05
    residues_per_batch: int = 1_000_000  # batches stop here too (memory grows with residues)

    @classmethod
    def from_config(cls, cfg: StatsConfig, alphabet: str) -> StatsSettings:
        ks = tuple(cfg.kmer_sizes) or tuple(DEFAULT_KMER_SIZES[alphabet])
        check_key_space(alphabet, list(ks))
        return cls(
            alphabet,
            ks,
            cfg.class_by,
            cfg.position_bins,
            cfg.seqlet_percentile,
            SeqletSettings(
                0.0,
                cfg.seqlet_window,
                cfg.seqlet_min_length,
                cfg.seqlet_max_length,
                cfg.seqlet_flank,
            ),
            cfg.max_seqlets,
            cfg.min_occurrences,
            cfg.alpha,
            cfg.top_motifs,
            cfg.min_motif_seqlets,
            cfg.rows_per_batch,
            both_strands=uses_both_strands(alphabet, cfg.both_strands),
            exclude_unconverged=cfg.exclude_unconverged,
            min_motif_share=cfg.min_motif_share,
            motif_alpha=cfg.motif_alpha,
            motif_database=cfg.motif_database,
            database_matches=cfg.database_matches,
            database_alpha=cfg.database_alpha,
            residues_per_batch=cfg.residues_per_batch,
        )
