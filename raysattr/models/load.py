"""Load a sequence classifier and its tokenizer, find the layers attributions hook into, and
fingerprint the weights for provenance.

A model path is a local directory, a hub id (resolved through the HF cache; works offline when
cached) or an `s3://` prefix (copied once into a local cache through `raysattr.io.fs`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raysattr.config import ModelConfig
from raysattr.errors import ModelError
from raysattr.models.check import check_vocab_fits, content_limit, open_tokenizer, special_ids
from raysattr.models.files import (
    Place,
    check_architecture,
    check_weights,
    describe,
    list_files,
    locate,
    read_config,
)


@dataclass
class LoadedModel:
    """A classifier ready for attribution.

    Attributes:
        model: the `*ForSequenceClassification` module, in eval mode.
        tokenizer: its HF tokenizer.
        embeddings: the embeddings module (`base_model.embeddings`) LIG hooks into.
        word_embeddings: the token-embedding layer (`[vocab, hidden]`).
        max_content_tokens: tokens that fit between `[CLS]` and `[SEP]`.
        fingerprint: sha256 of the weights (names, dtypes, shapes, bytes).
        source: where the model was loaded from.
    """

    model: nn.Module
    tokenizer: Any
    embeddings: nn.Module
    word_embeddings: nn.Embedding
    max_content_tokens: int
    fingerprint: str
    source: str

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def special_ids(self) -> dict[str, int | None]:
        """Ids of `cls`, `sep`, `pad`, `unk`, `mask` (None when the tokenizer lacks one)."""
        return special_ids(self.tokenizer)

    def encoder_layers(self) -> list[nn.Module]:
        """The transformer blocks, input side first."""
        base = self.model.base_model
        for path in ("encoder.layer", "transformer.layer", "layers"):
            obj: Any = base
            for part in path.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, nn.ModuleList):
                return list(obj)
        raise ValueError(f"cannot find the encoder layers of a {self.model_type} model")


def resolve_local(path: str, cache_dir: str | None = None) -> str:
    """Return a local directory or hub id for `path`; `s3://` prefixes are copied to a cache."""
    if not path.startswith("s3://"):
        return path
    from raysattr.io.fs import copy_prefix_to_local

    cache_root = Path(cache_dir or os.environ.get("RAYSATTR_CACHE", "~/.cache/raysattr"))
    target = cache_root.expanduser() / "models" / hashlib.sha1(path.encode()).hexdigest()[:16]
    copy_prefix_to_local(path, target)
    return str(target)


def load_model(
    cfg: ModelConfig, device: str | torch.device = "cpu", attn_implementation: str | None = None
) -> LoadedModel:
    """Load the classifier and tokenizer named by `cfg` onto `device`, in eval mode.

    The files are checked first with the driver's checks (`raysattr.models.check`), so an actor
    reports the same one-line error; a hub id missing from the cache is still downloaded by
    transformers as before.

    Args:
        cfg: model section of the run config.
        device: torch device for the replica.
        attn_implementation: e.g. "eager" when attention weights are needed.

    Raises:
        ModelError: the model or tokenizer is missing, corrupt, not allowed (pickle), has no
            classification head or embeddings, or the tokenizer's ids exceed the embedding.
    """
    model = _from_pretrained(_checked_source(cfg), cfg, attn_implementation)
    tokenizer = load_tokenizer(cfg)
    model.to(device).eval()
    embeddings, word = find_embeddings(model)
    check_vocab_fits(tokenizer, word.num_embeddings, _where(cfg))
    return LoadedModel(
        model,
        tokenizer,
        embeddings,
        word,
        max_content_tokens(model, tokenizer),
        fingerprint(model),
        cfg.path,
    )


def _checked_source(cfg: ModelConfig) -> str:
    """What `from_pretrained` gets (a local folder, or the hub id), after the file checks."""
    where = f"model.path={cfg.path!r}"
    place = locate(cfg.path, "model.path", cfg.revision, offline=False)
    if place.kind == "hub":
        return cfg.path  # not cached: transformers downloads and checks it
    files = list_files(place, "model.path")
    local = place.path
    if place.kind == "s3":
        local = resolve_local(cfg.path, cfg.cache_dir)
        files = list_files(Place("local", local, cfg.path), "model.path")
    check_weights(files, cfg.allow_pickle, where)
    check_architecture(read_config(files, where), where, cfg.trust_remote_code)
    return cfg.path if place.kind == "hub_cache" else local


def _from_pretrained(source: str, cfg: ModelConfig, attn_implementation: str | None) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            use_safetensors=not cfg.allow_pickle or None,
            attn_implementation=attn_implementation,
            **kwargs,
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a bad checkpoint
        raise ModelError(
            f"cannot load the model ({describe(exc)})",
            f"model.path={cfg.path!r}",
            "check that the folder holds a complete save_pretrained checkpoint",
        ) from exc


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The HF tokenizer of `model.tokenizer` (or `model.path`); `s3://` is copied to the cache.

    Raises:
        ModelError: the folder is missing, holds no vocabulary, or transformers cannot load it.
    """
    key = "model.tokenizer" if cfg.tokenizer else "model.path"
    path = cfg.tokenizer or cfg.path
    where = f"{key}={path!r}"
    place = locate(path, key, cfg.revision, offline=False)
    if place.kind == "hub":
        return open_tokenizer(path, where, None, cfg.trust_remote_code, cfg.revision)
    files = list_files(place, key)
    source = place.path
    if place.kind == "s3":
        source = resolve_local(path, cfg.cache_dir)
    elif place.kind == "hub_cache":
        source = path  # the hub id: transformers resolves it and the revision, as before
    return open_tokenizer(source, where, files, cfg.trust_remote_code, cfg.revision)


def _where(cfg: ModelConfig) -> str:
    where = f"model.path={cfg.path!r}"
    return f"{where}, model.tokenizer={cfg.tokenizer!r}" if cfg.tokenizer else where


def find_embeddings(model: nn.Module) -> tuple[nn.Module, nn.Embedding]:
    """Return `(embeddings module, word-embedding layer)` of a BERT-family classifier.

    Works for BERT, RoBERTa, DistilBERT, Longformer, ESM and anything exposing
    `base_model.embeddings.word_embeddings`.
    """
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    word = getattr(embeddings, "word_embeddings", None) if embeddings is not None else None
    if not isinstance(word, nn.Embedding):
        raise ModelError(
            f"cannot find base_model.embeddings.word_embeddings in {type(model).__name__}",
            "model.path",
            "use a BERT, RoBERTa, DistilBERT, Longformer or ESM-style classifier",
        )
    return embeddings, word


def max_content_tokens(model: nn.Module, tokenizer: Any) -> int:
    """Tokens that fit between the two special tokens."""
    return content_limit(model.config.to_dict(), tokenizer)


def fingerprint(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + digest.hexdigest()
