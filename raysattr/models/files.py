"""A model folder's files, read without loading the weights: where it is (local folder, `s3://`
prefix, hub cache), which weights it holds, what their safetensors headers say, and config.json.

Shared by `raysattr.models.check` (the driver's check before a run) and `raysattr.models.load_model`
(the actors), so both report the same one-line `ModelError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysattr.errors import ModelError
from raysattr.io.fs import filesystem

SAFE_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
_EMBEDDING_SUFFIX = "embeddings.word_embeddings.weight"
_MAX_HEADER_BYTES = 100 << 20  # safetensors refuses larger headers too
_SMALL_FILE_BYTES = 64 << 20  # tokenizer files are a few MB; anything larger is not fetched


@dataclass(frozen=True)
class Place:
    """Where a model or tokenizer lives.

    Attributes:
        kind: "local", "s3", "hub_cache" (a cached hub snapshot) or "hub" (not cached; only
            `load_model` accepts it, and transformers downloads it).
        path: the local folder, `s3://` prefix, snapshot folder or hub id.
        name: the configured value, for messages.
    """

    kind: str
    path: str
    name: str


@dataclass(frozen=True)
class ModelFiles:
    """The top-level files of a model folder, local or `s3://`, with their sizes in bytes."""

    uri: str
    fs: Any
    root: str
    sizes: dict[str, int]

    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes `[start, end)` of `name` (a ranged read on S3)."""
        return self.fs.cat_file(f"{self.root}/{name}", start=start, end=end)


@dataclass(frozen=True)
class WeightsInfo:
    """The weight files and what their headers say."""

    format: str
    files: tuple[str, ...]
    n_bytes: int
    embedding_rows: int | None


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, for one-line errors that wrap a library's."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ------------------------------------------------------------------------------------ places
def locate(path: str, key: str, revision: str | None = None, offline: bool = True) -> Place:
    """Find `path` (the value of config `key`): local folder, `s3://` prefix or hub id.

    Args:
        offline: a hub id missing from the local HF cache is an error (the driver's check);
            otherwise it is returned as kind "hub" for transformers to download.

    Raises:
        ModelError: a missing local folder, a file, or an uncached hub id when `offline`.
    """
    where = f"{key}={path!r}"
    if path.startswith("s3://"):
        return Place("s3", path, path)
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(
                "not a directory", where, f"set {key} to the folder save_pretrained wrote"
            )
        return Place("local", str(local), path)
    if not _could_be_hub_id(path):
        raise ModelError("no such directory", where, f"check {key}")
    snapshot = _hub_snapshot(path, revision)
    if snapshot is not None:
        return Place("hub_cache", snapshot, path)
    if not offline:
        return Place("hub", path, path)
    raise ModelError(
        "not a local directory, not an s3:// prefix, and not in the Hugging Face cache",
        where,
        f"download it first (hf download {path}) or set {key} to a local folder or s3:// prefix",
    )


def _could_be_hub_id(path: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError:
        return False
    return True


def _hub_snapshot(repo_id: str, revision: str | None) -> str | None:
    """The cached snapshot folder of `repo_id`, or None; never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure here means "not usable from the cache"
        return None


def list_files(place: Place, key: str) -> ModelFiles:
    """List the top-level files of a local folder or `s3://` prefix.

    Raises:
        ModelError: the folder or prefix holds no files, or cannot be listed.
    """
    where = f"{key}={place.name!r}"
    fs, root = filesystem(place.path)
    root = root.rstrip("/")
    try:
        if place.kind == "s3":
            found = fs.ls(root, detail=True, refresh=True)
            sizes = {
                e["name"].rsplit("/", 1)[-1]: int(e["size"]) for e in found if e["type"] == "file"
            }
        else:  # os.scandir follows the HF cache's symlinks; fsspec reports them as "other"
            sizes = {e.name: e.stat().st_size for e in os.scandir(root) if e.is_file()}
    except FileNotFoundError:
        sizes = {}
    except Exception as exc:  # noqa: BLE001 - s3fs raises botocore errors, not only OSError
        raise ModelError(
            f"cannot list it ({type(exc).__name__}: {exc})", where, "check access"
        ) from exc
    if not sizes:
        what = "nothing under this s3:// prefix" if place.kind == "s3" else "an empty folder"
        raise ModelError(what, where, f"set {key} to where save_pretrained wrote the model")
    return ModelFiles(place.path, fs, root, sizes)


@contextmanager
def local_copy(place: Place, files: ModelFiles) -> Iterator[str]:
    """A local folder with the small files (config, tokenizer) of `place`: the folder itself when
    local, else a temporary copy of everything that is not weights."""
    if place.kind != "s3":
        yield place.path
        return
    with tempfile.TemporaryDirectory(prefix="raysattr-model-check-") as tmp:
        for name, size in files.sizes.items():
            if not name.endswith(_WEIGHT_SUFFIXES) and size <= _SMALL_FILE_BYTES:
                files.fs.get(f"{files.root}/{name}", os.path.join(tmp, name))
        yield tmp


# ----------------------------------------------------------------------------------- weights
def check_weights(files: ModelFiles, allow_pickle: bool, where: str) -> WeightsInfo:
    """Find the weights transformers would load and check them from their headers.

    Raises:
        ModelError: no weights, pickle-only weights without `model.allow_pickle`, missing
            shards, or a safetensors file whose header is unreadable or disagrees with its size.
    """
    if "model.safetensors" in files.sizes:
        names = ["model.safetensors"]
    elif SAFE_INDEX in files.sizes:
        names = _index_shards(files, SAFE_INDEX, where)
    else:
        return _pickle_weights(files, allow_pickle, where)
    rows = None
    for name in names:
        header = read_safetensors_header(files, name, where)
        rows = rows or _embedding_rows(header)
    return WeightsInfo("safetensors", tuple(names), sum(files.sizes[n] for n in names), rows)


def _pickle_weights(files: ModelFiles, allow_pickle: bool, where: str) -> WeightsInfo:
    if PICKLE_INDEX in files.sizes:
        names = _index_shards(files, PICKLE_INDEX, where)
    else:
        names = [n for n in files.sizes if n == "pytorch_model.bin"]
    if not names:
        others = sorted(n for n in files.sizes if n.endswith(_WEIGHT_SUFFIXES))
        seen = f" (found {', '.join(others)})" if others else ""
        raise ModelError(
            f"no weights: neither model.safetensors nor pytorch_model.bin{seen}",
            f"{where}",
            "copy the files save_pretrained wrote (config.json, model.safetensors, tokenizer)",
        )
    if not allow_pickle:
        raise ModelError(
            f"only pickle weights ({', '.join(names)}), which can run code when loaded",
            where,
            "convert them to safetensors (load, then save_pretrained) or set "
            "model.allow_pickle=true if you trust the source",
        )
    return WeightsInfo("pickle", tuple(names), sum(files.sizes[n] for n in names), None)


def _index_shards(files: ModelFiles, index: str, where: str) -> list[str]:
    """Shard names of a sharded checkpoint; all must be present."""
    try:
        shards = sorted(set(json.loads(files.read(index))["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"{index} is not a valid index ({type(exc).__name__}: {exc})",
            f"{where}, file {index}",
            "copy it again from the original checkpoint",
        ) from None
    missing = [s for s in shards if s not in files.sizes]
    if missing:
        raise ModelError(
            f"sharded checkpoint is missing {len(missing)} of {len(shards)} shards "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
            f"{where}, file {index}",
            "copy every shard the index names into the folder",
        )
    return shards


def read_safetensors_header(files: ModelFiles, name: str, where: str) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file's size (ranged reads).

    Layout: 8 bytes little-endian header length N, N bytes of JSON, then the tensor bytes; the
    largest `data_offsets` end says how many tensor bytes must follow.

    Raises:
        ModelError: naming the file, when the header is unreadable or the size disagrees.
    """
    size = files.sizes[name]

    def corrupt(detail: str) -> ModelError:
        return ModelError(
            f"{name} is not a valid safetensors file: {detail}",
            f"{where}, file {name}",
            "copy it again from the original checkpoint (a download or copy was cut short?)",
        )

    if size < 8:
        raise corrupt(f"it has {size} bytes, fewer than the 8-byte header length")
    length = int.from_bytes(files.read(name, 0, 8), "little")
    if length > min(size - 8, _MAX_HEADER_BYTES):
        raise corrupt(f"its header length says {length} bytes but the file has {size}")
    try:
        header = json.loads(files.read(name, 8, 8 + length))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise corrupt(f"its header is not readable ({type(exc).__name__}: {exc})") from None
    declared = 8 + length + max(ends, default=0)
    if declared != size:
        raise corrupt(f"its header declares {declared} bytes but the file has {size}")
    return header


def _embedding_rows(header: Mapping[str, Any]) -> int | None:
    for key, info in header.items():
        if key.endswith(_EMBEDDING_SUFFIX):
            return int(info["shape"][0])
    return None


# ------------------------------------------------------------------------------------ config
def read_config(files: ModelFiles, where: str) -> dict[str, Any]:
    """`config.json` as a dict.

    Raises:
        ModelError: it is missing or not a JSON object.
    """
    if "config.json" not in files.sizes:
        raise ModelError(
            "no config.json", where, "save the model with save_pretrained, which writes it"
        )
    try:
        config = json.loads(files.read("config.json"))
    except ValueError as exc:
        config = exc
    if not isinstance(config, dict):
        raise ModelError(
            f"config.json is not a JSON object ({config})",
            f"{where}, file config.json",
            "copy it again from the original checkpoint",
        )
    return config


def check_architecture(config: Mapping[str, Any], where: str, trust_remote_code: bool) -> None:
    """Refuse checkpoints without a sequence-classification head, where config.json tells.

    Raises:
        ModelError: the saved architecture is not `*ForSequenceClassification`, or transformers
            has no classification class for its `model_type`.
    """
    auto_map = config.get("auto_map") or {}
    if trust_remote_code and "AutoModelForSequenceClassification" in auto_map:
        return
    archs = config.get("architectures") or []
    if archs and not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise ModelError(
            f"config.json says the model is a {archs[0]}, which has no sequence-classification "
            "head (loading it would add an untrained, random one)",
            where,
            "use a checkpoint fine-tuned for classification (*ForSequenceClassification)",
        )
    _check_model_type(config.get("model_type"), where)


def _check_model_type(model_type: Any, where: str) -> None:
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as CLASSIFIERS,
    )

    if model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(
            f"transformers {transformers.__version__} does not know model_type={model_type!r}",
            f"{where}, file config.json",
            "upgrade transformers, or set model.trust_remote_code=true if the folder ships code",
        )
    if model_type not in CLASSIFIERS:
        raise ModelError(
            f"transformers has no sequence-classification model for model_type={model_type!r}",
            where,
            "use a BERT, RoBERTa, DistilBERT, Longformer or ESM-style classifier",
        )


def count_labels(config: Mapping[str, Any]) -> int:
    """Outputs of the head: `id2label`'s size, else `num_labels`, else transformers' default 2."""
    if isinstance(config.get("id2label"), dict) and config["id2label"]:
        return len(config["id2label"])
    if isinstance(config.get("num_labels"), int):
        return int(config["num_labels"])
    return 2
