"""k-mer statistics per class: occurrences, sequences holding them, the mean and |mean| score of
the residues each occurrence covers, and occurrences inside seqlets. Sparse and mergeable.

Letters (DNA, protein): a k-mer is k consecutive residues, none outside the alphabet (`N`, `X`
break it); it is keyed by `class * A**k + code`. Text: a k-mer is k consecutive words (`\\w+`,
lower-cased), keyed by the string `"<class>\\t<words>"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raysattr.stats.flat import ALPHABETS, WORD_RE, FlatRows, window_sums

STATS = ("occurrences", "rows_with", "score_sum", "abs_sum", "in_seqlets")


@dataclass
class KmerTable:
    """One k: sorted unique `keys` `[u]` and one `[u]` array per name in `STATS`."""

    keys: np.ndarray
    values: dict

    @classmethod
    def reduce(cls, keys, rows, score, abs_score, inside) -> KmerTable:
        """Group window-level arrays `[m]` by key; `rows` are block-local row indices."""
        if len(keys) == 0:
            return cls.empty(keys.dtype)
        order = np.argsort(keys, kind="stable")  # stable: rows stay ascending within a key
        sorted_keys, sorted_rows = keys[order], rows[order]
        new_key = np.ones(len(keys), bool)
        new_key[1:] = sorted_keys[1:] != sorted_keys[:-1]
        new_pair = new_key.copy()
        new_pair[1:] |= sorted_rows[1:] != sorted_rows[:-1]
        group = np.cumsum(new_key) - 1
        n = int(group[-1]) + 1
        return cls(
            sorted_keys[new_key],
            {
                "occurrences": np.bincount(group, minlength=n).astype(np.int64),
                "rows_with": np.bincount(group[new_pair], minlength=n).astype(np.int64),
                "score_sum": np.bincount(group, weights=score[order], minlength=n),
                "abs_sum": np.bincount(group, weights=abs_score[order], minlength=n),
                "in_seqlets": np.bincount(group, weights=inside[order], minlength=n).astype(
                    np.int64
                ),
            },
        )

    @classmethod
    def empty(cls, dtype) -> KmerTable:
        zeros = {s: np.zeros(0, np.float64 if s.endswith("sum") else np.int64) for s in STATS}
        return cls(np.zeros(0, dtype), zeros)

    def __add__(self, other: KmerTable) -> KmerTable:
        if not len(other.keys):
            return self
        if not len(self.keys):
            return other
        uniq, inv = np.unique(np.concatenate([self.keys, other.keys]), return_inverse=True)
        values = {}
        for name in STATS:
            both = np.concatenate([self.values[name], other.values[name]])
            summed = np.bincount(inv, weights=both, minlength=len(uniq))
            values[name] = summed if name.endswith("sum") else np.rint(summed).astype(np.int64)
        return KmerTable(uniq, values)


@dataclass
class KmerCounts:
    """`{k: KmerTable}` for one alphabet."""

    alphabet: str
    tables: dict = field(default_factory=dict)

    @classmethod
    def of(cls, flat: FlatRows, alphabet: str, ks: list[int], covered: np.ndarray) -> KmerCounts:
        """Count every k in `ks` over a block; `covered` `[total]` marks residues in seqlets."""
        sums = _PrefixSums.of(flat, covered)  # shared by every k
        if alphabet == "text":
            return cls(alphabet, {k: _word_table(flat, k, sums) for k in ks})
        codes = flat.codes(alphabet)
        return cls(alphabet, {k: _letter_table(flat, codes, alphabet, k, sums) for k in ks})

    def __add__(self, other: KmerCounts) -> KmerCounts:
        if self.alphabet != other.alphabet:
            raise ValueError(f"cannot merge k-mer counts of {self.alphabet} and {other.alphabet}")
        tables = dict(self.tables)
        for k, table in other.tables.items():
            tables[k] = tables[k] + table if k in tables else table
        return KmerCounts(self.alphabet, tables)

    def decode(self, k: int) -> tuple[np.ndarray, list[str]]:
        """Classes `[u]` and motif strings of the keys of `k`."""
        keys = self.tables[k].keys
        if self.alphabet == "text":
            parts = [key.split("\t", 1) for key in keys]
            return np.array([int(p[0]) for p in parts], np.int64), [p[1] for p in parts]
        letters = np.array(list(ALPHABETS[self.alphabet]))
        size = len(letters) ** k
        classes, codes = np.divmod(keys.astype(np.int64), size)
        chars = np.empty((len(keys), k), dtype="<U1")
        for j in range(k - 1, -1, -1):
            codes, digit = np.divmod(codes, len(letters))
            chars[:, j] = letters[digit]
        return classes, ["".join(row) for row in chars]


def check_key_space(alphabet: str, ks: list[int], max_class: int = 1023) -> None:
    """Raise when `class * A**k + code` for the largest k cannot fit in int64."""
    if alphabet == "text":
        return
    a = len(ALPHABETS[alphabet])
    for k in ks:
        if (max_class + 1) * a**k >= 2**62:
            raise ValueError(f"stats.kmer_sizes: k={k} is too large for the {alphabet} alphabet")


@dataclass
class _PrefixSums:
    """Prefix sums `[total + 1]` of scores, |scores| and seqlet coverage of one block."""

    score: np.ndarray
    abs_score: np.ndarray
    covered: np.ndarray

    @classmethod
    def of(cls, flat: FlatRows, covered: np.ndarray) -> _PrefixSums:
        return cls(
            np.concatenate([[0.0], np.cumsum(flat.scores)]),
            np.concatenate([[0.0], np.cumsum(np.abs(flat.scores))]),
            np.concatenate([[0], np.cumsum(covered)]),
        )


def _letter_table(flat, codes, alphabet, k, sums) -> KmerTable:
    size = len(ALPHABETS[alphabet])
    idx, n_bad = window_sums((codes < 0).astype(np.float64), flat, k)
    idx = idx[n_bad == 0]
    code = np.zeros(len(idx), dtype=np.int64)
    for j in range(k):
        code = code * size + codes[idx + j]
    keys = flat.classes[flat.row_of[idx]] * size**k + code
    return _windows(flat, keys, idx, np.full(len(idx), k), sums)


def _windows(flat, keys, starts, widths, sums: _PrefixSums) -> KmerTable:
    """Score and seqlet membership of windows `[starts, starts + widths)` (flat indices)."""
    ends = starts + widths
    inside = (sums.covered[ends] - sums.covered[starts]) == widths
    return KmerTable.reduce(
        keys,
        flat.row_of[starts],
        (sums.score[ends] - sums.score[starts]) / widths,
        (sums.abs_score[ends] - sums.abs_score[starts]) / widths,
        inside.astype(np.float64),
    )


def _word_table(flat, k, sums) -> KmerTable:
    words, starts, ends, rows = [], [], [], []
    for r, seq in enumerate(flat.sequences):
        base = flat.starts[r]
        found = [(m.group(0).lower(), m.start(), m.end()) for m in WORD_RE.finditer(seq)]
        for i in range(len(found) - k + 1):
            gram = found[i : i + k]
            words.append(f"{flat.classes[r]}\t" + " ".join(w for w, _, _ in gram))
            starts.append(base + gram[0][1])
            ends.append(base + gram[-1][2])
            rows.append(r)
    if not words:
        return KmerTable.empty(object)
    starts_a, ends_a = np.array(starts, np.int64), np.array(ends, np.int64)
    return _windows(flat, np.array(words, dtype=object), starts_a, ends_a - starts_a, sums)
