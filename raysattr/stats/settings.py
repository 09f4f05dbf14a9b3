"""`StatsSettings`: the statistics' configuration with the alphabet and k-mer sizes resolved, as
every accumulator and pass reads it (frozen: states computed with other settings never merge)."""

from __future__ import annotations

from dataclasses import dataclass

from raysattr.config import StatsConfig
from raysattr.stats.flat import DEFAULT_KMER_SIZES
from raysattr.stats.kmers import check_key_space
from raysattr.stats.seqlets import SeqletSettings


@dataclass(frozen=True)
class StatsSettings:
    """`StatsConfig` with the alphabet and k-mer sizes resolved."""

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
        )
