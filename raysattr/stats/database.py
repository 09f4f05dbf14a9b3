"""Names from a motif database: every reported motif compared with the motifs of a MEME file
(`stats.motif_database`, e.g. JASPAR's) by TOMTOM, as `memelite` implements it (no MEME suite
binaries), on both strands for DNA.

TOMTOM gives one p-value per (motif, database motif) pair; q-values are Benjamini–Hochberg over
the database, per motif (as MEME's tomtom reports them). A motif keeps its best
`database_matches` matches with q < `database_alpha`.
"""

from __future__ import annotations

import numpy as np

from raysattr.errors import ConfigError
from raysattr.io.fs import filesystem
from raysattr.stats.enrichment import bh_log_q
from raysattr.stats.flat import ALPHABETS
from raysattr.stats.motifs import Motif, read_meme

INSTALL = "pip install 'raysattr[motifs]' (memelite)"
KEY = "stats.motif_database"


class Database:
    """The motifs of a MEME file: `ids` `[t]`, `names` `[t]` (the MOTIF line's second field,
    e.g. a TF name; may be empty) and `pwms` (`[W, A]` each)."""

    def __init__(self, uri: str, ids: list[str], names: list[str], pwms: list[np.ndarray]):
        self.uri, self.ids, self.names, self.pwms = uri, ids, names, pwms

    @classmethod
    def load(cls, uri: str, alphabet: str | None) -> Database:
        """Read and check a MEME file for motifs of `alphabet` (None: any alphabet).

        Raises:
            ConfigError: unreadable, not MEME, no motif, or another alphabet.
        """
        where = f"{KEY}={uri!r}"
        try:
            fs, path = filesystem(uri)
            with fs.open(path, "rb") as handle:
                text = handle.read().decode("utf-8", errors="replace")
            motifs = read_meme(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the motif database cannot be read ({exc})", where, "give a MEME file"
            ) from exc
        if not motifs:
            raise ConfigError("the motif database holds no MOTIF", where, "give a MEME file")
        letters = ALPHABETS.get(alphabet or "", "")
        named = motifs[0]["alphabet"]
        widths = {m["pwm"].shape[1] for m in motifs if len(m["pwm"])}
        if alphabet and ((named and named != letters) or widths - {len(letters)}):
            raise ConfigError(
                f"the motif database's alphabet ({named or widths}) is not this run's "
                f"({alphabet}: {letters})",
                where,
                f"give a database of {alphabet} motifs",
            )
        kept = [m for m in motifs if len(m["pwm"])]
        return cls(uri, [m["name"] for m in kept], [m["consensus"] for m in kept],
                   [m["pwm"] for m in kept])  # fmt: skip


def require_memelite() -> None:
    """Raises ConfigError with the install line when memelite is missing."""
    try:
        import memelite  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "stats.motif_database needs memelite's TOMTOM, which is not installed", KEY, INSTALL
        ) from exc


def check_database(uri: str | None, alphabet: str) -> None:
    """Pre-flight: memelite importable and the database readable, of `alphabet` when that is
    dna or protein (nothing when `uri` is None; text runs draw no motifs)."""
    if uri is None or alphabet == "text":
        return
    require_memelite()
    Database.load(uri, alphabet if alphabet in ("dna", "protein") else None)


def annotate(
    motifs: list[Motif], db: Database, both_strands: bool, max_matches: int, alpha: float
) -> None:
    """Set each motif's `matches`: `[{id, name, p, q, offset, overlap, strand}]`, best first,
    q < `alpha`, at most `max_matches`."""
    if not motifs:
        return
    from memelite import tomtom

    p, _, offsets, overlaps, strands = tomtom(
        [np.ascontiguousarray(m.pwm.T, np.float64) for m in motifs],
        [np.ascontiguousarray(t.T, np.float64) for t in db.pwms],
        reverse_complement=both_strands,
    )
    for i, motif in enumerate(motifs):
        log_p = np.log(np.clip(p[i], 1e-300, 1.0))
        q = np.exp(bh_log_q(log_p))
        order = [j for j in np.argsort(p[i], kind="stable") if q[j] < alpha][:max_matches]
        motif.matches = [
            {
                "id": db.ids[j],
                "name": db.names[j],
                "p": float(p[i, j]),
                "q": float(q[j]),
                "offset": int(offsets[i, j]),
                "overlap": int(overlaps[i, j]),
                "strand": "-" if strands[i, j] == 1 else "+",
            }
            for j in order
        ]


def warm_tomtom() -> None:
    """Compile memelite's TOMTOM kernels now (numba caches them next to memelite), so the first
    annotation does not pay for it: minutes on 2 cores in a fresh environment, then ~0.1 s.
    The Makefile runs this once after installing the `dev` extra."""
    require_memelite()
    rng = np.random.default_rng(0)
    motifs = [Motif("warm", "", "", 0, rng.dirichlet(np.ones(4), 8), 1, 1.0)]
    targets = [rng.dirichlet(np.ones(4), 10) for _ in range(30)]
    annotate(motifs, Database("warm", [""] * 30, [""] * 30, targets), True, 1, 0.05)
