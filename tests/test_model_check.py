"""`check_model` on a good tiny model and on one broken copy per failure: the exception class,
the file or key named and the fix; `load_model` gives the same errors; prediction failures stay
per row in the engine. No Ray; the S3 tests use a local moto_server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, BertTokenizer, BertTokenizerLegacy

from raysattr.attribution import AttributionEngine
from raysattr.attribution.budget import TokenBudget
from raysattr.attribution.predict import BatchPredictor
from raysattr.config import AttributionConfig, load
from raysattr.errors import ConfigError, ModelError
from raysattr.models import load_model
from raysattr.models.check import check_model, scheme_tokenizer, vocab_kmer_size
from raysattr.tokenize import TokenizedRow, build_kmer_vocab, build_protein_vocab, make_tokenizer

from .factories import save_random_bert

K = 3
VOCAB = build_kmer_vocab(K)  # 5 specials + 64 3-mers = 69 tokens


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_random_bert(tmp_path_factory.mktemp("good"), VOCAB)


@pytest.fixture
def model(good, tmp_path) -> Path:
    """A copy of the good model to break."""
    return Path(shutil.copytree(good, tmp_path / "model"))


def cfg(path, *overrides):
    return load(None, [f"model.path={path}", f"tokenize.k={K}", *overrides])


def check_fails(error, path, *overrides, words=()):
    with pytest.raises(error) as info:
        check_model(cfg(path, *overrides))
    message = str(info.value)
    assert type(info.value) is error, message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


def edit_json(path: Path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------------------- passing
def test_a_good_model_passes_with_its_facts(good):
    facts = check_model(cfg(good))
    assert facts.source == "local" and facts.local_path == str(good)
    assert facts.model_type == "bert" and facts.architecture == "BertForSequenceClassification"
    assert facts.num_labels == 2 and facts.labels == ("LABEL_0", "LABEL_1")
    assert facts.vocab_size == facts.embedding_rows == len(VOCAB)
    assert facts.kmer_k == K and facts.hidden_size == 32 and facts.num_layers == 2
    assert facts.max_content_tokens == load_model(cfg(good).model).max_content_tokens == 62
    assert facts.weights_format == "safetensors" and facts.weight_files == ("model.safetensors",)
    assert facts.weight_bytes == (good / "model.safetensors").stat().st_size
    assert facts.special_ids == {"cls": 2, "sep": 3, "pad": 0, "unk": 1, "mask": 4}
    json.dumps(facts.to_dict())
    tokenize = scheme_tokenizer(cfg(good).tokenize, load_model(cfg(good).model).tokenizer, "")
    assert tokenize("ACGTA").n_tokens == 3


def test_a_regression_head_passes_with_logit_output(model, tmp_path):
    one = save_random_bert(tmp_path / "one", VOCAB, num_labels=1)
    assert check_model(cfg(one, "attribution.output=logit")).num_labels == 1


# ------------------------------------------------------------------------------------ paths
def test_missing_local_folder(tmp_path):
    check_fails(ModelError, tmp_path / "nope", words=("no such directory", "model.path="))


def test_a_file_is_not_a_folder(model):
    check_fails(ModelError, model / "config.json", words=("not a directory", "model.path="))


def test_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    check_fails(ModelError, tmp_path / "empty", words=("empty folder", "model.path="))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # "org/name" must not exist as a local folder
    return cache


def test_a_hub_id_not_in_the_cache(hub_cache):
    check_fails(
        ModelError,
        "org/name",
        words=("not a local directory", "not an s3:// prefix", "not in the Hugging Face cache"),
    )


def test_a_hub_id_in_the_cache_is_checked_offline(hub_cache, good):
    repo = hub_cache / "models--org--name"
    shutil.copytree(good, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    facts = check_model(cfg("org/name"))
    assert facts.source == "hub_cache" and facts.local_path.endswith("abc123")


# ---------------------------------------------------------------------------------- weights
def test_pickle_only_weights_need_the_key(model):
    state = load_file(model / "model.safetensors")
    (model / "model.safetensors").unlink()
    torch.save(state, model / "pytorch_model.bin")
    check_fails(
        ModelError,
        model,
        words=("pickle", "pytorch_model.bin", "convert", "model.allow_pickle=true"),
    )
    assert check_model(cfg(model, "model.allow_pickle=true")).weights_format == "pickle"


def test_no_weights_at_all(model):
    (model / "model.safetensors").unlink()
    check_fails(ModelError, model, words=("no weights", "model.safetensors", "model.path="))


def test_a_sharded_checkpoint_with_a_missing_shard(model):
    net = BertForSequenceClassification.from_pretrained(model)
    (model / "model.safetensors").unlink()
    net.save_pretrained(model, max_shard_size="40KB")
    shards = sorted(model.glob("model-*.safetensors"))
    assert len(shards) >= 2
    assert check_model(cfg(model)).weight_files == tuple(p.name for p in shards)
    shards[-1].unlink()
    check_fails(
        ModelError,
        model,
        words=(f"missing 1 of {len(shards)} shards", shards[-1].name, "index.json"),
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _huge_header_length(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes((10**9).to_bytes(8, "little") + data[8:])


def _garbled_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:20] = b"not json at!"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (_truncate, "declares"),
        (_huge_header_length, "header length"),
        (_garbled_header, "not readable"),
    ],
)
def test_a_corrupt_safetensors_file_is_named(model, damage, detail):
    damage(model / "model.safetensors")
    check_fails(
        ModelError,
        model,
        words=("model.safetensors is not a valid safetensors file", detail, "copy it again"),
    )


# ----------------------------------------------------------------------------------- config
def test_missing_config(model):
    (model / "config.json").unlink()
    check_fails(ModelError, model, words=("no config.json", "save_pretrained"))


def test_unparseable_config(model):
    (model / "config.json").write_text("{not json")
    check_fails(ModelError, model, words=("config.json is not a JSON object", "config.json"))


def test_an_architecture_without_a_classification_head(model):
    edit_json(model / "config.json", architectures=["BertForMaskedLM"])
    check_fails(ModelError, model, words=("BertForMaskedLM", "no sequence-classification head"))


def test_an_unknown_model_type(model):
    edit_json(model / "config.json", model_type="nosuchbert")
    check_fails(ModelError, model, words=("model_type='nosuchbert'", "trust_remote_code"))


def test_a_regression_head_with_prob_output(tmp_path):
    one = save_random_bert(tmp_path / "one", VOCAB, num_labels=1)
    check_fails(
        ConfigError,
        one,
        words=("softmax of one output is always 1", "every attribution would be 0"),
    )
    message = check_fails(ConfigError, one, "attribution.output=prob")
    assert message.endswith("set attribution.output=logit")


def test_a_class_target_the_model_lacks(good):
    check_fails(
        ConfigError, good, "attribution.target=class:2", words=("class 2", "attribution.target")
    )


# -------------------------------------------------------------------------------- tokenizer
def test_a_tokenizer_that_cannot_be_loaded(model):
    (model / "tokenizer.json").write_text("{broken")
    check_fails(ModelError, model, words=("cannot load the tokenizer", "model.path="))


def test_a_folder_without_a_vocabulary(model):
    (model / "tokenizer.json").unlink()
    check_fails(ModelError, model, words=("no tokenizer vocabulary", "model.tokenizer"))


def test_a_vocabulary_larger_than_the_embedding(good, tmp_path):
    bigger = tmp_path / "tok4"
    BertTokenizer(vocab={t: i for i, t in enumerate(build_kmer_vocab(4))}).save_pretrained(bigger)
    check_fails(
        ModelError,
        good,
        f"model.tokenizer={bigger}",
        "tokenize.k=4",
        words=("261 tokens", "69 rows", "model.tokenizer="),
    )


def test_kmer_size_that_does_not_match_the_vocabulary(good):
    check_fails(
        ConfigError,
        good,
        "tokenize.k=4",
        words=("holds 3-mers, not 4-mers", "tokenize.k=4", "set tokenize.k=3"),
    )


def test_kmer_scheme_on_a_protein_vocabulary(tmp_path):
    protein = save_random_bert(tmp_path / "protein", build_protein_vocab())
    check_fails(ConfigError, protein, words=("no DNA k-mers", "tokenize.scheme='kmer'"))
    assert check_model(cfg(protein, "tokenize.scheme=residue")).kmer_k is None


def test_residue_scheme_on_a_kmer_vocabulary(good):
    check_fails(
        ConfigError,
        good,
        "tokenize.scheme=residue",
        words=("no residue letters", "tokenize.scheme='residue'", "tokenize.k=3"),
    )


def test_text_scheme_needs_a_fast_tokenizer(good, tmp_path):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerLegacy(vocab_file=str(slow / "vocab.txt")).save_pretrained(slow)
    check_fails(
        ModelError,
        good,
        f"model.tokenizer={slow}",
        "tokenize.scheme=text",
        words=("fast tokenizer", "BertTokenizerLegacy", "tokenize.scheme='text'"),
    )


def test_a_baseline_token_the_tokenizer_lacks(good, tmp_path):
    no_mask = tmp_path / "no-mask"
    BertTokenizer(vocab={t: i for i, t in enumerate(VOCAB)}, mask_token=None).save_pretrained(
        no_mask
    )
    check_fails(
        ConfigError,
        good,
        f"model.tokenizer={no_mask}",
        "attribution.baseline=mask",
        words=("no mask token", "attribution.baseline='mask'", "attribution.baseline=pad"),
    )


def test_kmer_size_of_a_vocabulary():
    assert vocab_kmer_size(dict.fromkeys(build_kmer_vocab(6), 0)) == 6
    assert vocab_kmer_size(dict.fromkeys(build_protein_vocab(), 0)) is None
    assert vocab_kmer_size(dict.fromkeys(["CAT", "GATTACA", "TAG", "the"], 0)) is None


# ------------------------------------------------------------------------- actors: the same
def _pickle_only(model: Path) -> None:
    state = load_file(model / "model.safetensors")
    (model / "model.safetensors").unlink()
    torch.save(state, model / "pytorch_model.bin")


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: shutil.rmtree(m),
        _pickle_only,
        lambda m: _truncate(m / "model.safetensors"),
        lambda m: (m / "config.json").unlink(),
        lambda m: edit_json(m / "config.json", architectures=["BertForMaskedLM"]),
        lambda m: (m / "tokenizer.json").unlink(),
    ],
    ids=["missing", "pickle", "truncated", "no-config", "no-head", "no-vocabulary"],
)
def test_load_model_raises_what_check_model_raises(model, damage):
    damage(model)
    with pytest.raises(ModelError) as driver:
        check_model(cfg(model))
    with pytest.raises(ModelError) as actor:
        load_model(cfg(model).model)
    assert str(actor.value) == str(driver.value)


def test_load_model_refuses_a_vocabulary_larger_than_the_embedding(good, tmp_path):
    bigger = tmp_path / "tok4"
    BertTokenizer(vocab={t: i for i, t in enumerate(build_kmer_vocab(4))}).save_pretrained(bigger)
    config = cfg(good, f"model.tokenizer={bigger}")
    with pytest.raises(ModelError, match="261 tokens but .* 69 rows") as actor:
        load_model(config.model)
    with pytest.raises(ModelError) as driver:
        check_model(config)
    assert str(actor.value) == str(driver.value)


# ------------------------------------------------------------------------------------- S3
BUCKET = "raysattr-test/model-check"  # the session moto server's bucket (conftest.py)


@pytest.fixture(scope="module")
def s3_models(s3, good):
    s3.put(str(good), f"{BUCKET}/good", recursive=True)
    return s3


@pytest.mark.s3
def test_s3_model_is_checked_without_fetching_its_weights(s3_models, good, monkeypatch):
    import s3fs

    fetched, ranges = [], []
    real_get, real_cat = s3fs.S3FileSystem._get_file, s3fs.S3FileSystem._cat_file

    async def get_file(self, rpath, lpath, **kwargs):
        fetched.append(rpath)
        return await real_get(self, rpath, lpath, **kwargs)

    async def cat_file(self, path, version_id=None, start=None, end=None):
        ranges.append((path, start, end))
        return await real_cat(self, path, version_id, start, end)

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", get_file)
    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", cat_file)
    s3fs.S3FileSystem.clear_instance_cache()  # cached instances bound the unpatched methods
    facts = check_model(cfg(f"s3://{BUCKET}/good"))
    assert facts.source == "s3" and facts.local_path is None and facts.embedding_rows == 69
    assert any(p.endswith("tokenizer.json") for p in fetched)
    assert not any(p.endswith(".safetensors") for p in fetched)
    weights = [(start, end) for path, start, end in ranges if path.endswith(".safetensors")]
    size = (good / "model.safetensors").stat().st_size
    assert len(weights) == 2 and all(end is not None and end < size / 10 for _, end in weights)


@pytest.mark.s3
def test_s3_prefix_holding_nothing(s3_models):
    check_fails(
        ModelError, f"s3://{BUCKET}/nothing-here", words=("nothing under this s3:// prefix",)
    )


@pytest.mark.s3
def test_s3_corrupt_safetensors_is_named(s3_models, good):
    s3_models.put(str(good / "config.json"), f"{BUCKET}/bad/config.json")
    damaged = (good / "model.safetensors").read_bytes()[:-100]
    s3_models.pipe(f"{BUCKET}/bad/model.safetensors", damaged)
    check_fails(
        ModelError,
        f"s3://{BUCKET}/bad",
        words=(
            f"model.path='s3://{BUCKET}/bad', file model.safetensors",
            "not a valid safetensors",
        ),
    )


@pytest.mark.s3
def test_load_model_from_s3_checks_the_same_way(s3_models, tmp_path):
    loaded = load_model(cfg(f"s3://{BUCKET}/good", f"model.cache_dir={tmp_path}").model)
    assert loaded.word_embeddings.num_embeddings == 69
    empty = cfg(f"s3://{BUCKET}/nothing-here", f"model.cache_dir={tmp_path}")
    with pytest.raises(ModelError) as driver:
        check_model(empty)
    with pytest.raises(ModelError) as actor:
        load_model(empty.model)
    assert str(actor.value) == str(driver.value)


# --------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def loaded(good):
    return load_model(cfg(good).model)


def test_an_out_of_range_token_fails_only_its_row(loaded):
    tok = make_tokenizer("kmer", loaded.tokenizer, k=K)
    rows = [tok(s) for s in ("ACGTACGTAC", "GGGTTTAAACC", "TTTTGGGGCCCCAAAA")]
    bad = rows[1].content_ids.copy()
    bad[2] = len(VOCAB) + 5
    rows[1] = TokenizedRow(bad, rows[1].spans, rows[1].residues)
    results = AttributionEngine(loaded, AttributionConfig(method="saliency")).run(rows)
    assert [r.status for r in results] == ["ok", "invalid_token", "ok"]
    assert (
        f"token id {len(VOCAB) + 5}" in results[1].error and "model.tokenizer" in results[1].error
    )


def test_the_engine_refuses_a_regression_head_with_prob_output(tmp_path):
    one = load_model(cfg(save_random_bert(tmp_path / "one", VOCAB, num_labels=1)).model)
    with pytest.raises(ConfigError, match="softmax of one output"):
        AttributionEngine(one, AttributionConfig(output="prob"))
    tok = make_tokenizer("kmer", one.tokenizer, k=K)
    results = AttributionEngine(one, AttributionConfig(method="saliency", output="logit")).run(
        [tok("ACGTACGTAC")]
    )
    assert results[0].ok and np.abs(results[0].token_attr).sum() > 0


class _FlakyForward:
    """`logits` that fails like a real model would: IndexError on id 99, OOM on > 2 rows."""

    def __init__(self):
        self.batch_sizes = []

    def logits(self, ids, mask):
        self.batch_sizes.append(len(ids))
        if len(ids) > 2:
            raise torch.OutOfMemoryError("injected")
        if (ids == 99).any():
            raise IndexError("index out of range in self")
        return ids.float().sum(dim=1, keepdim=True).repeat(1, 2) * torch.tensor([0.0, 1.0])


def test_prediction_failures_stay_per_row_and_oom_backs_off():
    rows = [np.array([2, 5, 3]), np.array([2, 99, 3]), np.array([2, 6, 7, 3]), np.array([2, 3])]
    forward = _FlakyForward()
    budget = TokenBudget(10_000, attn_ratio=1e9)
    prediction = BatchPredictor(forward, budget, 0, 64, "cpu")(rows, n_classes=2)
    assert budget.oom_count >= 1 and max(forward.batch_sizes[budget.oom_count :]) <= 2
    assert prediction.failures == {
        1: ("attribution_failed", "prediction failed: IndexError: index out of range in self")
    }
    ok = [0, 2, 3]
    assert np.isnan(prediction.probs[1]).all() and np.isfinite(prediction.probs[ok]).all()
    np.testing.assert_allclose(prediction.probs[ok].sum(axis=1), 1.0, rtol=1e-6)
