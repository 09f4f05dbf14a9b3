"""k-mer statistics per class: occurrences, sequences holding them, the mean and |mean| score of
the residues each occurrence covers, and occurrences inside seqlets. Sparse and mergeable.

Letters (DNA, protein): a k-mer is k consecutive residues, none outside the alphabet (`N`, `X`
break it); it is keyed by `class * A**k + code`. With both strands (DNA, `stats.both_strands`) a
k-mer and its reverse complement share the canonical code (`raysattr.stats.strands`), and
`forward` counts the occurrences read on the canonical strand, so a k-mer is named in the
orientation the data holds most. Text: a k-mer is k consecutive words (`\\w+`, lower-cased),
keyed by the string `"<class>\\t<words>"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raysattr.stats.flat import ALPHABETS, WORD_RE, FlatRows, window_sums
from raysattr.stats.strands import reverse_complement

STATS = ("occurrences", "rows_with", "score_sum", "abs_sum", "in_seqlets", "forward")


@dataclass
class KmerTable:
    """One k: sorted unique `keys` `[u]` and one `[u]` array per name in `STATS`."""

    keys: np.ndarray
    values: dict

    @classmethod
    def reduce(cls, keys, rows, score, abs_score, inside, forward) -> KmerTable:
        """Group window-level arrays `[m]` by key; `rows` are block-local row indices,
        `forward` marks windows read on the canonical strand."""
        if len(keys) == 0:
            return cls.empty(keys.dtype)
        order = _key_row_order(keys, rows)
        sorted_keys, sorted_rows = keys[order], rows[order]
        new_key = np.ones(len(keys), bool)
        new_key[1:] = sorted_keys[1:] != sorted_keys[:-1]
        new_pair = new_key.copy()
        new_pair[1:] |= sorted_rows[1:] != sorted_rows[:-1]
        group = np.cumsum(new_key) - 1
        n = int(group[-1]) + 1

        def count(weights=None):
            w = None if weights is None else weights[order]
            return np.bincount(group, weights=w, minlength=n)

        return cls(
            sorted_keys[new_key],
            {
                "occurrences": count().astype(np.int64),
                "rows_with": np.bincount(group[new_pair], minlength=n).astype(np.int64),
                "score_sum": count(score),
                "abs_sum": count(abs_score),
                "in_seqlets": count(inside).astype(np.int64),
                "forward": count(forward).astype(np.int64),
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


def _key_row_order(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Order `[m]` sorting by key, rows ascending within a key. Integer keys sort as one
    composite `key * n_rows + row` with numpy's default (SIMD) sort, which is several times
    faster than a stable sort on the keys; strings (text) and huge keys sort stably."""
    n_rows = int(rows.max()) + 1
    if keys.dtype != object and int(keys.min()) >= 0 and int(keys.max()) < (2**62) // n_rows:
        return np.argsort(keys.astype(np.int64) * n_rows + rows)
    return np.argsort(keys, kind="stable")  # stable: rows stay ascending within a key


@dataclass
class KmerCounts:
    """`{k: KmerTable}` for one alphabet; `both_strands`: DNA k-mers keyed canonically."""

    alphabet: str
    tables: dict = field(default_factory=dict)
    both_strands: bool = False

    @classmethod
    def of(
        cls,
        flat: FlatRows,
        alphabet: str,
        ks: list[int],
        covered: np.ndarray,
        both_strands: bool = False,
    ) -> KmerCounts:
        """Count every k in `ks` over a block; `covered` `[total]` marks residues in seqlets;
        `both_strands` (DNA only) merges each k-mer with its reverse complement."""
        sums = _PrefixSums.of(flat, covered)  # shared by every k
        if alphabet == "text":
            return cls(alphabet, {k: _word_table(flat, k, sums) for k in ks})
        codes = flat.codes(alphabet)
        tables = {k: _letter_table(flat, codes, alphabet, k, sums, both_strands) for k in ks}
        return cls(alphabet, tables, both_strands)

    def __add__(self, other: KmerCounts) -> KmerCounts:
        if (self.alphabet, self.both_strands) != (other.alphabet, other.both_strands):
            raise ValueError(
                f"cannot merge k-mer counts of {self.alphabet} (both strands: "
                f"{self.both_strands}) and {other.alphabet} (both strands: {other.both_strands})"
            )
        tables = dict(self.tables)
        for k, table in other.tables.items():
            tables[k] = tables[k] + table if k in tables else table
        return KmerCounts(self.alphabet, tables, self.both_strands)

    def decode(self, k: int) -> tuple[np.ndarray, list[str]]:
        """Classes `[u]` and motif strings of the keys of `k` (canonical k-mers in the
        orientation most of their occurrences were read in)."""
        keys = self.tables[k].keys
        if self.alphabet == "text":
            parts = [key.split("\t", 1) for key in keys]
            return np.array([int(p[0]) for p in parts], np.int64), [p[1] for p in parts]
        letters = np.array(list(ALPHABETS[self.alphabet]))
        size = len(letters) ** k
        classes, codes = np.divmod(keys.astype(np.int64), size)
        chars = np.empty((len(keys), k), dtype="<U1")
        rest = codes
        for j in range(k - 1, -1, -1):
            rest, digit = np.divmod(rest, len(letters))
            chars[:, j] = letters[digit]
        motifs = ["".join(row) for row in chars]
        if self.both_strands:
            flip = self._mostly_reverse(k, codes)
            motifs = [reverse_complement(m) if f else m for m, f in zip(motifs, flip, strict=True)]
        return classes, motifs

    def _mostly_reverse(self, k: int, codes: np.ndarray) -> np.ndarray:
        """`[u]` bool: most occurrences of the key's k-mer, over all classes, were read as its
        reverse complement (one orientation per k-mer, so every class names it alike)."""
        v = self.tables[k].values
        uniq, inv = np.unique(codes, return_inverse=True)
        forward = np.bincount(inv, weights=v["forward"], minlength=len(uniq))
        total = np.bincount(inv, weights=v["occurrences"], minlength=len(uniq))
        return (2 * forward < total)[inv]


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


def _letter_table(flat, codes, alphabet, k, sums, both_strands: bool) -> KmerTable:
    size = len(ALPHABETS[alphabet])
    idx, n_bad = window_sums((codes < 0).astype(np.float64), flat, k)
    idx = idx[n_bad == 0]
    code = np.zeros(len(idx), dtype=np.int64)
    rc = np.zeros(len(idx), dtype=np.int64) if both_strands else None
    for j in range(k):
        letter = codes[idx + j].astype(np.int64)
        code = code * size + letter
        if rc is not None:  # the reverse complement, built alongside (no divmod per window)
            rc += (size - 1 - letter) * size**j
    forward = np.ones(len(idx), bool)
    if rc is not None:
        forward = code <= rc
        code = np.minimum(code, rc)
    keys = flat.classes[flat.row_of[idx]] * size**k + code
    return _windows(flat, keys, idx, np.full(len(idx), k), sums, forward)


def _windows(flat, keys, starts, widths, sums: _PrefixSums, forward=None) -> KmerTable:
    """Score and seqlet membership of windows `[starts, starts + widths)` (flat indices);
    `forward` `[m]` marks windows on the canonical strand (default: all)."""
    ends = starts + widths
    inside = (sums.covered[ends] - sums.covered[starts]) == widths
    return KmerTable.reduce(
        keys,
        flat.row_of[starts],
        (sums.score[ends] - sums.score[starts]) / widths,
        (sums.abs_score[ends] - sums.abs_score[starts]) / widths,
        inside.astype(np.float64),
        np.ones(len(keys)) if forward is None else forward.astype(np.float64),
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
