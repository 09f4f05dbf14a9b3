"""Tokenization schemes: ids, residue spans, and the documented normalisation rules."""

import numpy as np
import pytest
from transformers import BertTokenizer

from raysattr.tokenize import (
    build_kmer_vocab,
    build_protein_vocab,
    make_tokenizer,
    token_to_residue,
)


def _hf(vocab):
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)


@pytest.fixture(scope="module")
def kmer3():
    return make_tokenizer("kmer", _hf(build_kmer_vocab(3)), k=3)


@pytest.fixture(scope="module")
def residue():
    return make_tokenizer("residue", _hf(build_protein_vocab()))


def test_dnabert_vocab_layout():
    vocab = build_kmer_vocab(6)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == 5 + 4**6
    assert vocab[5] == "AAAAAA" and vocab[-1] == "TTTTTT"


def test_kmer_overlapping_tokens_and_spans(kmer3):
    vocab = {t: i for i, t in enumerate(build_kmer_vocab(3))}
    row = kmer3("ACGTA")
    assert [vocab["ACG"], vocab["CGT"], vocab["GTA"]] == row.content_ids.tolist()
    assert row.spans.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert row.length == 5 and row.ok and row.n_unknown == 0


def test_kmer_normalises_case_whitespace_and_rna(kmer3):
    assert kmer3("ac gu\nA").residues == "ACGTA"


def test_kmer_n_becomes_unknown_and_is_counted(kmer3):
    row = kmer3("ACNGT")
    assert row.ok
    assert row.n_unknown == 3  # ACN, CNG, NGT
    assert (row.content_ids == 1).sum() == 3


@pytest.mark.parametrize(
    "value, code",
    [
        ("", "empty_sequence"),
        ("   ", "empty_sequence"),
        (None, "missing_sequence"),
        ("AC", "too_short"),
        ("ACGTé", "invalid_characters"),
        (42, "invalid_sequence"),
    ],
)
def test_kmer_error_rows_never_raise(kmer3, value, code):
    row = kmer3(value)
    assert row.error_code == code and not row.ok and row.error


def test_residue_tokens_strip_stop_and_map_unknowns(residue):
    vocab = {t: i for i, t in enumerate(build_protein_vocab())}
    row = residue("mk w*")
    assert row.residues == "MKW"
    assert row.content_ids.tolist() == [vocab["M"], vocab["K"], vocab["W"]]
    inner = residue("MK*W-")
    assert inner.n_unknown == 2 and inner.ok


def test_residue_only_stop_codon_is_empty(residue):
    assert residue("*").error_code == "empty_sequence"


def test_text_scheme_offsets():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s"]
    hf = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok = make_tokenizer("text", hf)
    row = tok("Hello worlds, ünïcode")
    assert row.content_ids.tolist()[:3] == [5, 6, 7]
    assert row.spans.tolist()[:3] == [[0, 5], [6, 11], [11, 12]]
    assert row.n_unknown >= 1 and row.ok


def test_kmer_with_wrong_k_is_a_clear_error():
    with pytest.raises(ValueError, match="no 4-mers"):
        make_tokenizer("kmer", _hf(build_kmer_vocab(3)), k=4)


def test_token_to_residue_is_the_mean_of_covering_kmers():
    spans = np.array([[0, 3], [1, 4], [2, 5]])
    res = token_to_residue(np.array([3.0, 6.0, 9.0]), spans, 5)
    np.testing.assert_allclose(res, [3.0, 4.5, 6.0, 7.5, 9.0])


def test_token_to_residue_leaves_uncovered_residues_at_zero():
    res = token_to_residue(np.array([2.0]), np.array([[1, 2]]), 4)
    np.testing.assert_allclose(res, [0.0, 2.0, 0.0, 0.0])
