"""The models layer: find, check and load a sequence classifier and its tokenizer.

- `files`: where a model lives (local folder, `s3://` prefix, Hugging Face cache), its file
  list, safetensors headers and `config.json`, without loading weights.
- `check`: `check_model(cfg)`, the driver's pre-flight of the model against the run config, and
  the checks `load` and the engine share.
- `load`: `load_model` (a replica on a device), `load_tokenizer`, `LoadedModel`, fingerprints.
"""

from raysattr.models.check import ModelFacts, check_model
from raysattr.models.load import (
    LoadedModel,
    find_embeddings,
    fingerprint,
    load_model,
    load_tokenizer,
    max_content_tokens,
    resolve_local,
)

__all__ = [
    "LoadedModel",
    "ModelFacts",
    "check_model",
    "find_embeddings",
    "fingerprint",
    "load_model",
    "load_tokenizer",
    "max_content_tokens",
    "resolve_local",
]
