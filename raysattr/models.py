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

# Models whose position ids start after the padding index (max usable = max_positions - pad - 1).
_OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "longformer", "esm")


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
        tok = self.tokenizer
        return {
            "cls": tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
            "sep": tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,
            "pad": tok.pad_token_id,
            "unk": tok.unk_token_id,
            "mask": tok.mask_token_id,
        }

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


def _check_weights(local: str, allow_pickle: bool) -> None:
    """Refuse pickle weights unless the config opts in (pickle runs code on load)."""
    p = Path(local)
    if not p.is_dir():
        return  # hub id: transformers enforces `use_safetensors` itself
    if any(p.glob("*.safetensors")):
        return
    if any(p.glob("*.bin")) and not allow_pickle:
        raise ValueError(
            f"model.path={local!r} has only pickle (*.bin) weights; convert them to safetensors "
            "or set model.allow_pickle=true if you trust the source"
        )
    if not any(p.glob("*.bin")):
        raise ValueError(f"model.path={local!r} holds no weights (*.safetensors or *.bin)")


def load_model(
    cfg: ModelConfig, device: str | torch.device = "cpu", attn_implementation: str | None = None
) -> LoadedModel:
    """Load the classifier and tokenizer named by `cfg` onto `device`, in eval mode.

    Args:
        cfg: model section of the run config.
        device: torch device for the replica.
        attn_implementation: e.g. "eager" when attention weights are needed.

    Raises:
        ValueError: missing/pickle-only weights, or no embeddings module found.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = resolve_local(cfg.path, cfg.cache_dir)
    _check_weights(local, cfg.allow_pickle)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    model = AutoModelForSequenceClassification.from_pretrained(
        local,
        use_safetensors=not cfg.allow_pickle or None,
        attn_implementation=attn_implementation,
        **kwargs,
    )
    tok_path = resolve_local(cfg.tokenizer, cfg.cache_dir) if cfg.tokenizer else local
    tokenizer = AutoTokenizer.from_pretrained(tok_path, **kwargs)
    model.to(device).eval()
    embeddings, word = find_embeddings(model)
    return LoadedModel(
        model,
        tokenizer,
        embeddings,
        word,
        max_content_tokens(model, tokenizer),
        fingerprint(model),
        cfg.path,
    )


def find_embeddings(model: nn.Module) -> tuple[nn.Module, nn.Embedding]:
    """Return `(embeddings module, word-embedding layer)` of a BERT-family classifier.

    Works for BERT, RoBERTa, DistilBERT, Longformer, ESM and anything exposing
    `base_model.embeddings.word_embeddings`.
    """
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    word = getattr(embeddings, "word_embeddings", None) if embeddings is not None else None
    if not isinstance(word, nn.Embedding):
        raise ValueError(
            f"cannot find base_model.embeddings.word_embeddings in {type(model).__name__}; "
            "supported: BERT, RoBERTa, DistilBERT, Longformer, ESM-style models"
        )
    return embeddings, word


def max_content_tokens(model: nn.Module, tokenizer: Any) -> int:
    """Tokens that fit between the two special tokens."""
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or 512
    if config.model_type in _OFFSET_POSITION_MODELS:
        positions -= (config.pad_token_id or 0) + 1
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < positions:
        positions = limit
    return int(positions) - 2


def fingerprint(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + digest.hexdigest()
