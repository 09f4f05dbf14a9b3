"""In-silico mutagenesis (`ism`): every residue of a row mutated to every other letter of the
alphabet, the mutant re-tokenized and predicted forward-only; no gradients, no steps, no delta.

For residue i and letter b, F(x with x_i = b) is the model's output for the row's target
(`attribution.output`: probability or logit). Per row the method stores

- `extra_hypothetical` `[length, letters]`: F(x with x_i = b) minus its mean over the letters at
  i — the "hypothetical" scores TF-MoDISco takes (what each letter would contribute there);
- `residue_attr` `[length]`: F(x) minus the mean over the letters at i, which is the hypothetical
  score of the residue actually there (residues outside the alphabet, `N` say, keep F(x) minus
  the mean of the letters that could replace them);
- `token_attr`: each token's mean residue score over the residues it covers.

It works for the `kmer` scheme (a mutation changes the k overlapping k-mers that cover it, which
are looked up again in the model's vocabulary, `[UNK]` for those absent as the tokenizer does)
and the `residue` scheme (one token per residue); text has no alphabet to mutate over. The
scheme is read from the token spans: k residues per token, one residue further each token.
A row costs (letters - 1) x length forward passes: one row per micro-batch, its mutants scored
by `predict_rows` in chunks of 4x the engine's `internal_batch_size` (forward-only), all of the
same length (no padding), out-of-memory halving the chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import MappingProxyType

import numpy as np
import torch

from raysattr.attribution.base import (
    PER_RESIDUE_LETTER,
    AttributionMethod,
    Batch,
    MethodOutput,
)
from raysattr.attribution.budget import TokenBudget
from raysattr.attribution.predict import predict_rows
from raysattr.attribution.registry import register
from raysattr.tokenize import AMINO_ACIDS, DNA_LETTERS

ONE_ROW_PER_BATCH = 1 << 30  # a row's mutants alone fill chunks: never two rows in one batch
MUTANTS_PER_BLOCK = 4096  # mutant sequences built at once (bounds memory on long proteins)
# A no-grad forward keeps no activations for a backward pass: 4x the forward+backward chunk, as
# the faithfulness check's forward-only passes use.
FORWARD_ONLY_FACTOR = 4


def alphabet_of(vocab: dict[str, int]) -> str:
    """The letters residues are mutated to: the 20 amino acids when each is a token of its own
    (ProtBert-style vocabularies), else DNA."""
    return AMINO_ACIDS if all(a in vocab for a in AMINO_ACIDS) else DNA_LETTERS


def kmer_width(spans: np.ndarray, n_residues: int) -> int:
    """k of a row's tokens: token t covers residues [t, t + k) (k = 1 for the residue scheme).

    Raises:
        ValueError: the spans are not those of the kmer or residue scheme (text).
    """
    widths = spans[:, 1] - spans[:, 0]
    k = int(widths[0]) if len(widths) else 0
    starts_ok = np.array_equal(spans[:, 0], np.arange(len(spans)))
    if k < 1 or not starts_ok or (widths != k).any() or len(spans) + k - 1 != n_residues:
        raise ValueError(
            "ism mutates residues of the kmer or residue schemes (tokenize.scheme); these tokens "
            "do not cover one residue each or k overlapping ones"
        )
    return k


@register("ism")
class InSilicoMutagenesis(AttributionMethod):
    """Mutate each residue to each other letter, re-tokenize, predict; see the module text."""

    scores_residues = True
    schemes = ("kmer", "residue")
    extras = MappingProxyType({"hypothetical": PER_RESIDUE_LETTER})

    def __init__(self, forward):
        super().__init__(forward)
        tokenizer = forward.loaded.tokenizer
        self.vocab = tokenizer.get_vocab()
        self.unk_id = tokenizer.unk_token_id
        self.pad_id = forward.loaded.special_ids()["pad"]
        self.alphabet = alphabet_of(self.vocab)

    def evals_per_row(self, n_steps: int) -> int:
        return ONE_ROW_PER_BATCH

    def attribute(self, batch: Batch, n_steps: int, internal_batch_size: int) -> MethodOutput:
        """Scores of `batch` (see the module text); `internal_batch_size` mutants per forward.

        Returns:
            `token_attr` `[batch, seq_len]`, `residue_attr` `[batch, max_residues]` and the
            extra `hypothetical` `[batch, max_residues, letters]`.
        """
        if batch.residues is None or batch.spans is None:
            raise ValueError("ism needs the batch's residues (Batch.residues and Batch.spans)")
        n_res = max(len(r) for r in batch.residues)
        residue = np.zeros((batch.size, n_res), np.float32)
        hypothetical = np.zeros((batch.size, n_res, len(self.alphabet)), np.float32)
        token_attr = torch.zeros(batch.size, batch.seq_len)
        forward_evals = 0
        for j in range(batch.size):
            scores, hyp = self._row(batch, j, internal_batch_size)
            letters = len(self.alphabet)
            forward_evals += 1 + sum(letters - (c in self.alphabet) for c in batch.residues[j])
            residue[j, : len(scores)], hypothetical[j, : len(scores)] = scores, hyp
            spans = batch.spans[j]
            cumulative = np.concatenate([[0.0], np.cumsum(scores, dtype=np.float64)])
            means = (cumulative[spans[:, 1]] - cumulative[spans[:, 0]]) / (
                spans[:, 1] - spans[:, 0]
            )
            token_attr[j, 1 : 1 + len(spans)] = torch.from_numpy(means.astype(np.float32))
        return MethodOutput(
            token_attr,
            extras={"hypothetical": hypothetical},
            residue_attr=residue,
            grad_evals=0,
            forward_evals=forward_evals,
        )

    def _row(self, batch: Batch, j: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """`(residue scores [n], hypothetical [n, letters])` of row `j`."""
        residues, spans = batch.residues[j], batch.spans[j]
        k = kmer_width(spans, len(residues))
        n_tokens = len(spans)
        ids = batch.input_ids[j, : n_tokens + 2].cpu().numpy()
        target = int(batch.targets[j])
        values = np.zeros((len(residues), len(self.alphabet)), np.float64)
        reference = self._predict([ids], target, chunk)[0]
        for positions, letters, mutants in self._mutant_blocks(ids, residues, k):
            values[positions, letters] = self._predict(mutants, target, chunk)
        for i, letter in enumerate(residues):  # the residue already there: F(x)
            if letter in self.alphabet:
                values[i, self.alphabet.index(letter)] = reference
        mean = values.mean(axis=1, keepdims=True)
        return (reference - mean[:, 0]).astype(np.float32), (values - mean).astype(np.float32)

    def _mutant_blocks(
        self, ids: np.ndarray, residues: str, k: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
        """`(positions, letter indices, token ids)` of the single-letter mutants, in blocks of
        at most `MUTANTS_PER_BLOCK`; the ids are `ids` with the tokens covering the mutated
        residue looked up again (`[CLS]`/`[SEP]` kept)."""
        n_tokens = len(ids) - 2
        positions, letters, mutants = [], [], []
        for i, ref in enumerate(residues):
            first, last = max(0, i - k + 1), min(n_tokens - 1, i)
            for b, letter in enumerate(self.alphabet):
                if letter == ref:
                    continue
                mutated = residues[first:i] + letter + residues[i + 1 : last + k]
                mutant = ids.copy()
                for t in range(first, last + 1):
                    kmer = mutated[t - first : t - first + k]
                    mutant[t + 1] = self.vocab.get(kmer, self.unk_id)
                positions.append(i), letters.append(b), mutants.append(mutant)
            if len(mutants) >= MUTANTS_PER_BLOCK:
                yield np.array(positions), np.array(letters), mutants
                positions, letters, mutants = [], [], []
        if mutants:
            yield np.array(positions), np.array(letters), mutants

    def _predict(self, sequences: list[np.ndarray], target: int, chunk: int) -> np.ndarray:
        """F(sequence) for `target`, `[len(sequences)]`, forward-only in chunks of `chunk`."""
        out = np.zeros(len(sequences), np.float64)

        def score(ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
            return self.forward.from_ids(ids, mask)[:, target]

        # Every mutant has the row's length, so the budget counts tokens only (no attention
        # term): `rows` mutants per forward, halved on out-of-memory.
        width, rows = len(sequences[0]), chunk * FORWARD_ONLY_FACTOR
        budget = TokenBudget(rows * width, attn_ratio=math.inf)
        device = self.loaded.device
        predict_rows(score, sequences, out, self.pad_id, device, budget=budget, max_rows=rows)
        return out
