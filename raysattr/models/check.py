"""Check the model against the run config before a run clears anything or starts Ray.

`check_model` reads only small files: `config.json`, the tokenizer files and the safetensors
headers (ranged reads, through `raysattr.models.files`), never the weights (ProtBert's are
1.6 GB). `raysattr.models.load_model` and the engine call the same checks, so an actor fails with
the same one-line error the driver gives.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raysattr.errors import ConfigError, ModelError, RaysattrError
from raysattr.models.files import (
    ModelFiles,
    Place,
    WeightsInfo,
    check_architecture,
    check_weights,
    count_labels,
    describe,
    list_files,
    local_copy,
    locate,
    read_config,
)
from raysattr.tokenize import DNA_LETTERS, Tokenizer, make_tokenizer

_VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
_VOCAB_SUFFIXES = (".model", ".tiktoken")  # sentencepiece, tiktoken
# Models whose position ids start after the padding index (max usable = max_positions - pad - 1).
OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "longformer", "esm")


@dataclass(frozen=True)
class ModelFacts:
    """What the driver learned about the model without loading its weights.

    Attributes:
        path: `model.path` as configured.
        source: "local", "s3" or "hub_cache".
        local_path: the folder the files were read from; None for `s3://` (actors copy it).
        tokenizer_path: `model.tokenizer` or `model.path`.
        model_type: `config.json`'s `model_type`, e.g. "bert".
        architecture: `config.json`'s first architecture, e.g. "BertForSequenceClassification".
        num_labels: outputs of the classification head (1 = regression).
        labels: class names in index order (`id2label`).
        vocab_size: tokens the tokenizer knows (`len(tokenizer)`).
        embedding_rows: rows of the word-embedding matrix (valid token ids are below this);
            None when neither the safetensors header nor config.json says.
        hidden_size: embedding width; num_layers: transformer blocks (None when not stated).
        max_content_tokens: tokens that fit between `[CLS]` and `[SEP]`.
        weights_format: "safetensors" or "pickle"; weight_files: their names; weight_bytes: size.
        kmer_k: length of the DNA k-mers the vocabulary holds (None when it holds none).
        special_ids: ids of cls, sep, pad, unk, mask (None where the tokenizer lacks one).
    """

    path: str
    source: str
    local_path: str | None
    tokenizer_path: str
    model_type: str
    architecture: str | None
    num_labels: int
    labels: tuple[str, ...]
    vocab_size: int
    embedding_rows: int | None
    hidden_size: int | None
    num_layers: int | None
    max_content_tokens: int
    weights_format: str
    weight_files: tuple[str, ...]
    weight_bytes: int
    kmer_k: int | None
    special_ids: dict[str, int | None]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for `summary.json`."""
        return dataclasses.asdict(self)


def check_model(cfg: Any) -> ModelFacts:
    """Check that `cfg.model` can be loaded and fits `cfg.tokenize` and `cfg.attribution`.

    Args:
        cfg: the `RunConfig` of the run.

    Returns:
        What the run summary and later stages can use without loading the model.

    Raises:
        ModelError: the model or tokenizer is missing, corrupt, not allowed or does not fit.
        ConfigError: a config key (`tokenize.k`, `tokenize.scheme`, `attribution.output`,
            `attribution.target`, `attribution.baseline`) does not fit the model.
    """
    m = cfg.model
    where = f"model.path={m.path!r}"
    place = locate(m.path, "model.path", m.revision)
    files = list_files(place, "model.path")
    weights = check_weights(files, m.allow_pickle, where)
    config = read_config(files, where)
    check_architecture(config, where, m.trust_remote_code)
    num_labels = count_labels(config)
    check_outputs(num_labels, cfg.attribution.output, where)
    check_target(num_labels, cfg.attribution.target)
    tokenizer, tok_where = _driver_tokenizer(cfg.model, place, files)
    rows = weights.embedding_rows or _positive_int(config.get("vocab_size"))
    check_vocab_fits(tokenizer, rows, f"{where}, {tok_where}" if m.tokenizer else where)
    scheme_tokenizer(cfg.tokenize, tokenizer, tok_where)
    kmer_k = vocab_kmer_size(tokenizer.get_vocab())
    special = special_ids(tokenizer)
    check_specials(special, cfg.attribution.baseline, tok_where)
    return _facts(cfg, place, config, weights, tokenizer, rows, kmer_k, special)


def _driver_tokenizer(m: Any, place: Place, files: ModelFiles) -> tuple[Any, str]:
    """The tokenizer `model.tokenizer` (or `model.path`) names, from a local folder; an s3://
    prefix gives only its small files, fetched into a temporary folder."""
    key = "model.tokenizer" if m.tokenizer else "model.path"
    if m.tokenizer:
        place = locate(m.tokenizer, key, m.revision)
        files = list_files(place, key)
    where = f"{key}={(m.tokenizer or m.path)!r}"
    with local_copy(place, files) as folder:
        return open_tokenizer(folder, where, files, m.trust_remote_code), where


def _facts(cfg, place, config, weights: WeightsInfo, tokenizer, rows, kmer_k, special):
    num_labels = count_labels(config)
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(num_labels)}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    return ModelFacts(
        path=cfg.model.path,
        source=place.kind,
        local_path=None if place.kind == "s3" else place.path,
        tokenizer_path=cfg.model.tokenizer or cfg.model.path,
        model_type=str(config.get("model_type")),
        architecture=(config.get("architectures") or [None])[0],
        num_labels=num_labels,
        labels=labels,
        vocab_size=len(tokenizer),
        embedding_rows=rows,
        hidden_size=_positive_int(config.get("hidden_size") or config.get("dim")),
        num_layers=_positive_int(config.get("num_hidden_layers") or config.get("n_layers")),
        max_content_tokens=content_limit(config, tokenizer),
        weights_format=weights.format,
        weight_files=weights.files,
        weight_bytes=weights.n_bytes,
        kmer_k=kmer_k,
        special_ids=special,
    )


def _positive_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


# --------------------------------------------------------------------------------- tokenizer
def open_tokenizer(
    source: str,
    where: str,
    files: ModelFiles | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Any:
    """Load the HF tokenizer at `source` (a local folder or a hub id).

    Args:
        where: the config key and value it came from, for messages.
        files: the folder's files, checked for a vocabulary first (transformers 5 silently builds
            an empty tokenizer from a folder without one).

    Raises:
        ModelError: no vocabulary file, or transformers cannot load it.
    """
    fix = "save the tokenizer into that folder with save_pretrained, or set model.tokenizer"
    if files is not None and not trust_remote_code:
        names = files.sizes
        if not any(n in _VOCAB_FILES or n.endswith(_VOCAB_SUFFIXES) for n in names):
            found = ", ".join(sorted(names)[:8])
            raise ModelError(
                f"no tokenizer vocabulary (tokenizer.json, vocab.txt, vocab.json or a "
                f"sentencepiece .model file; found {found})",
                where,
                fix,
            )
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "cannot load"
        raise ModelError(f"cannot load the tokenizer ({describe(exc)})", where, fix) from exc


def check_vocab_fits(tokenizer: Any, embedding_rows: int | None, where: str) -> None:
    """Every token id the tokenizer can give must be a row of the word embedding.

    Raises:
        ModelError: naming both numbers.
    """
    if embedding_rows is None:
        return
    size = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    if size > embedding_rows:
        raise ModelError(
            f"the tokenizer has {size} tokens but the model's word embedding has "
            f"{embedding_rows} rows (token ids {embedding_rows}..{size - 1} would fail)",
            where,
            "use the tokenizer the model was trained with (model.tokenizer)",
        )


def scheme_tokenizer(tok_cfg: Any, tokenizer: Any, where: str) -> Tokenizer:
    """`make_tokenizer` for `cfg.tokenize`, with errors that say which key to change.

    Args:
        tok_cfg: the `tokenize` section (scheme, k, uppercase).
        tokenizer: the model's HF tokenizer.
        where: the config key and value the tokenizer came from, for messages.

    Raises:
        ConfigError: `tokenize.k` or `tokenize.scheme` does not fit the vocabulary (the message
            names the k the vocabulary holds, when it holds k-mers).
        ModelError: the tokenizer lacks what the scheme needs (an unknown token, offsets).
    """
    try:
        return make_tokenizer(tok_cfg.scheme, tokenizer, tok_cfg.k, tok_cfg.uppercase)
    except ValueError as exc:
        found_k = vocab_kmer_size(tokenizer.get_vocab())
        raise _scheme_error(tok_cfg, tokenizer, found_k, where, exc) from None


def _scheme_error(t: Any, tokenizer: Any, found_k: int | None, where, exc) -> RaysattrError:
    scheme_key = f"tokenize.scheme={t.scheme!r}"
    if t.scheme == "text":
        return ModelError(
            f"tokenize.scheme=text needs a fast tokenizer (character offsets); "
            f"{type(tokenizer).__name__} is not one",
            f"{scheme_key}, {where}",
            "save the tokenizer with its tokenizer.json (a fast tokenizer), or use "
            "tokenize.scheme=residue or kmer",
        )
    if tokenizer.unk_token_id is None:
        return ModelError(
            f"the tokenizer has no unknown token, which tokenize.scheme={t.scheme} maps "
            "unseen letters to",
            where,
            "use a tokenizer with an unk token, or tokenize.scheme=text",
        )
    if t.scheme == "kmer" and found_k is not None:
        return ConfigError(
            f"the vocabulary holds {found_k}-mers, not {t.k}-mers",
            f"tokenize.k={t.k}, {where}",
            f"set tokenize.k={found_k}",
        )
    if t.scheme == "kmer":
        fix = "use tokenize.scheme=residue (one token per letter) or text"
        return ConfigError("the vocabulary holds no DNA k-mers", f"{scheme_key}, {where}", fix)
    if t.scheme == "residue":
        fix = f"set tokenize.scheme=kmer and tokenize.k={found_k}" if found_k else "use text"
        return ConfigError("the vocabulary has no residue letters", f"{scheme_key}, {where}", fix)
    return ConfigError(str(exc), scheme_key, "use residue, kmer or text")


def vocab_kmer_size(vocab: Mapping[str, int]) -> int | None:
    """Length of the DNA k-mers a vocabulary holds: the most common length (2 or more) of its
    ACGT-only tokens, counted only when at least half of the 4^k k-mers are there (so English
    words such as "CAT" do not count). None when there is no such length."""
    letters = set(DNA_LETTERS)
    lengths = Counter(len(t) for t in vocab if len(t) > 1 and set(t) <= letters)
    full = [n for n, count in lengths.items() if count >= 4**n / 2]
    return max(full, key=lambda n: (lengths[n], n)) if full else None


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """Ids of `cls`, `sep`, `pad`, `unk`, `mask` (None when the tokenizer lacks one)."""
    tok = tokenizer
    return {
        "cls": tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
        "sep": tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,
        "pad": tok.pad_token_id,
        "unk": tok.unk_token_id,
        "mask": tok.mask_token_id,
    }


def check_specials(special: Mapping[str, int | None], baseline: str, where: str) -> None:
    """The engine frames rows with cls/sep, pads with pad and needs the baseline token.

    Raises:
        ModelError: cls, sep or pad is missing. ConfigError: the baseline token is missing.
    """
    missing = [name for name in ("cls", "sep", "pad") if special.get(name) is None]
    if missing:
        raise ModelError(
            f"the tokenizer has no {'/'.join(missing)} token",
            where,
            "rows are framed as [CLS] ... [SEP] and padded: use a tokenizer that defines them",
        )
    baseline_token_id(special, baseline)


def baseline_token_id(special: Mapping[str, int | None], baseline: str) -> int:
    """The id of the `attribution.baseline` token.

    Raises:
        ConfigError: the tokenizer has no such token; the fix names one it has.
    """
    token_id = special.get(baseline)
    if token_id is None:
        have = [n for n in ("pad", "mask", "unk") if special.get(n) is not None]
        fix = f"use attribution.baseline={have[0]}" if have else "use a tokenizer with a pad token"
        raise ConfigError(
            f"the tokenizer has no {baseline} token to use as the baseline",
            f"attribution.baseline={baseline!r}",
            fix,
        )
    return int(token_id)


def content_limit(config: Mapping[str, Any], tokenizer: Any) -> int:
    """Tokens that fit between the two special tokens, from `config.json` and the tokenizer."""
    positions = config.get("max_position_embeddings") or 512
    if config.get("model_type") in OFFSET_POSITION_MODELS:
        positions -= (config.get("pad_token_id") or 0) + 1
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < positions:
        positions = limit
    return int(positions) - 2


# ------------------------------------------------------------------------------------- head
def check_outputs(num_labels: int, output: str, where: str) -> None:
    """A one-output (regression) head cannot be explained through a softmax.

    Raises:
        ConfigError: `num_labels < 2` with `attribution.output=prob`.
    """
    if num_labels < 2 and output == "prob":
        raise ConfigError(
            f"the model has {num_labels} output (a regression head): the softmax of one output "
            "is always 1, so every attribution would be 0",
            f"attribution.output='prob', {where}",
            "set attribution.output=logit",
        )


def check_target(num_labels: int, target: str) -> None:
    """A `class:N` target must be one of the model's classes.

    Raises:
        ConfigError: N >= num_labels.
    """
    if not target.startswith("class:"):
        return
    chosen = int(target.split(":", 1)[1])
    if chosen >= num_labels:
        raise ConfigError(
            f"class {chosen} does not exist: the model has {num_labels} classes "
            f"(0..{num_labels - 1})",
            f"attribution.target={target!r}",
            f"use a class below {num_labels}, or attribution.target=predicted",
        )
