"""In-silico mutagenesis (`ism`): the batched method against a naive loop that mutates the
sequence string, tokenizes it with the run's own tokenizer and predicts one mutant at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysattr.attribution import AttributionEngine
from raysattr.attribution.methods.ism import alphabet_of
from raysattr.config import AttributionConfig, TokenizeConfig
from raysattr.tokenize import AMINO_ACIDS, DNA_LETTERS, make_tokenizer

from .factories import random_dna_model, random_protein_model


def naive_ism(loaded, tokenizer, sequence: str, target: int, alphabet: str):
    """`(F(x), F [length, letters])`: every single-letter mutant of `sequence` written out as a
    string and tokenized from it by the run's tokenizer; the mutants (all of one length) are
    predicted in one stacked forward (softmax of the target)."""
    sp = loaded.special_ids()
    mutants = [
        sequence[:i] + letter + sequence[i + 1 :]
        for i in range(len(sequence))
        for letter in alphabet
    ]
    ids = torch.tensor(
        [[sp["cls"], *tokenizer(m).content_ids.tolist(), sp["sep"]] for m in [sequence, *mutants]]
    )
    with torch.no_grad():
        logits = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    values = torch.softmax(logits.float(), dim=-1)[:, target].double().numpy()
    return values[0], values[1:].reshape(len(sequence), len(alphabet))


def check_parity(loaded, tokenizer, sequences: list[str], alphabet: str, **settings):
    rows = [tokenizer(s) for s in sequences]
    config = AttributionConfig(method="ism", token_budget=200, **settings)
    engine = AttributionEngine(loaded, config, TokenizeConfig())
    results = engine.run(rows)
    assert engine.forward_evals == sum(
        1 + sum(len(alphabet) - (c in alphabet) for c in s) for s in sequences
    )
    for r, seq in zip(results, sequences, strict=True):
        assert r.status == "ok", r.error
        reference, values = naive_ism(loaded, tokenizer, seq, r.target, alphabet)
        mean = values.mean(axis=1)
        hyp = r.extras["hypothetical"]
        assert hyp.shape == (len(seq), len(alphabet))
        np.testing.assert_allclose(hyp, values - mean[:, None], atol=2e-6)
        np.testing.assert_allclose(r.residue_attr, reference - mean, atol=2e-6)
        assert np.abs(r.residue_attr).max() > 1e-4  # a random model's scores are not all ~0
        assert np.isnan(r.delta) and r.n_steps == 0
        # Tokens: the mean of the residues they cover ([CLS]/[SEP] 0).
        spans = tokenizer(seq).spans
        means = [r.residue_attr[a:b].mean() for a, b in spans]
        np.testing.assert_allclose(r.token_attr[1:-1], means, atol=1e-6)
        assert r.token_attr[0] == r.token_attr[-1] == 0
    return results


@pytest.fixture(scope="module")
def dna(tmp_path_factory):
    loaded = random_dna_model(tmp_path_factory.mktemp("ism-dna"), k=3, max_positions=48)
    return loaded, make_tokenizer("kmer", loaded.tokenizer, k=3)


def test_ism_kmer_equals_a_naive_loop(dna):
    loaded, tokenizer = dna
    assert alphabet_of(loaded.tokenizer.get_vocab()) == DNA_LETTERS
    rng = np.random.default_rng(3)
    sequences = ["".join(rng.choice(list("ACGT"), n)) for n in (12, 7, 20)]
    sequences.append("ACGNTTAGC")  # an N: its k-mers are [UNK], and it is mutated to A/C/G/T
    # Mixed lengths in one engine call; the small budget splits a row's mutants into chunks.
    check_parity(loaded, tokenizer, sequences, DNA_LETTERS, max_batch_rows=8)


def test_ism_residue_scheme_equals_a_naive_loop(tmp_path):
    loaded = random_protein_model(tmp_path / "protein", max_positions=48)
    tokenizer = make_tokenizer("residue", loaded.tokenizer)
    assert alphabet_of(loaded.tokenizer.get_vocab()) == AMINO_ACIDS
    check_parity(loaded, tokenizer, ["MKWHCKY", "GAVX"], AMINO_ACIDS, target="class:1")


def test_ism_windows_are_stitched_along_residues(dna):
    """A long row in windows: each window's mutants see only the window; residues two windows
    share get the mean of both."""
    loaded, tokenizer = dna
    seq = "".join(np.random.default_rng(5).choice(list("ACGT"), 30))
    row = tokenizer(seq)  # 28 tokens in windows of 16 tokens (18 residues)
    config = AttributionConfig(method="ism", target="class:0")
    long = TokenizeConfig(max_length=16, long_policy="window", window_stride=12)
    (result,) = AttributionEngine(loaded, config, long).run([row])
    assert result.status == "ok" and result.windows == 2
    _, first = naive_ism(loaded, tokenizer, seq[:18], 0, DNA_LETTERS)
    _, second = naive_ism(loaded, tokenizer, seq[12:], 0, DNA_LETTERS)
    hyp = result.extras["hypothetical"]
    assert hyp.shape == (30, 4)
    centred = [v - v.mean(axis=1, keepdims=True) for v in (first, second)]
    np.testing.assert_allclose(hyp[:12], centred[0][:12], atol=2e-6)
    np.testing.assert_allclose(hyp[12:18], (centred[0][12:] + centred[1][:6]) / 2, atol=2e-6)
    np.testing.assert_allclose(hyp[18:], centred[1][6:], atol=2e-6)


def test_ism_refuses_text_tokens_per_row(dna):
    """Text tokens cover several characters at irregular offsets: the row fails with a message
    naming the schemes ism supports; the others still run."""
    from raysattr.tokenize import TokenizedRow

    loaded, tokenizer = dna
    odd = TokenizedRow(np.array([7, 8], np.int64), np.array([[0, 2], [3, 6]], np.int32), "ACGTAC")
    results = AttributionEngine(loaded, AttributionConfig(method="ism")).run(
        [odd, tokenizer("ACGTACGT")]
    )
    assert results[0].status == "attribution_failed"
    assert "kmer or residue" in results[0].error
    assert results[1].status == "ok"


@pytest.mark.parametrize("bad", ["residue_attr", "hypothetical"])
def test_contract_check_catches_bad_residue_output(dna, bad):
    """The engine's contract check: a method declaring residue scores must return them, and a
    residue x letter extra must have three axes."""
    from raysattr.attribution.assemble import split_output
    from raysattr.attribution.base import MethodOutput
    from raysattr.attribution.methods.ism import InSilicoMutagenesis

    loaded, _ = dna
    method = InSilicoMutagenesis.from_config(
        AttributionEngine(loaded, AttributionConfig(method="ism")).forward, AttributionConfig()
    )
    good_hyp, bad_hyp = np.zeros((1, 5, 4)), np.zeros((1, 5))  # [batch, residues(, letters)]
    out = MethodOutput(
        torch.zeros(1, 5),
        extras={"hypothetical": bad_hyp if bad == "hypothetical" else good_hyp},
        residue_attr=None if bad == "residue_attr" else np.zeros((1, 5)),
    )
    expected = "returned no residue_attr" if bad == "residue_attr" else "declared 'residue_letter'"
    with pytest.raises(ValueError, match=expected):
        split_output(out, [5], method, 0, [5])
