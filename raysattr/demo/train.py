"""Train a tiny BERT sequence classifier on a demo dataset, on CPU, in seconds.

The model sees exactly what the attribution pipeline will feed it: `raysattr.tokenize` content ids
framed as `[CLS] + ids + [SEP]`, right-padded with an attention mask. The output directory is a
normal HF model directory (safetensors weights, config, tokenizer) that
`raysattr.models.load_model(ModelConfig(path=out_dir))` loads, plus `train_metrics.json`. A rerun
with the same dataset and spec finds the metrics' hash and reuses the model instead of training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raysattr.attribution.predict import pad_batch, predict_rows
from raysattr.tokenize import build_kmer_vocab, build_protein_vocab, make_tokenizer

METRICS_FILE = "train_metrics.json"
SCHEMES = ("kmer", "residue")
_HASH_VERSION = "demo-train-v1"  # bump when training changes in a way the hash cannot see


@dataclass
class TrainSpec:
    """How to build and train the classifier.

    Attributes:
        scheme: `kmer` (DNA, overlapping k-mers) or `residue` (protein, one token per residue).
        k: k-mer size for `kmer`.
        hidden: hidden size; layers, heads, intermediate: BERT shape.
        max_position_embeddings: positions, `[CLS]` and `[SEP]` included; longer rows are cut.
        epochs, lr, batch_size, weight_decay, warmup_fraction, dropout: optimisation.
        seed: torch and split seed.
        holdout: fraction of rows held out for accuracy.
    """

    scheme: str = "kmer"
    k: int = 6
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 128
    max_position_embeddings: int = 512
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    dropout: float = 0.1
    seed: int = 0
    holdout: float = 0.2


def demo_train_spec(alphabet: str = "dna", seed: int = 0) -> TrainSpec:
    """Settings tuned for `demo_dna_spec()` / `demo_protein_spec()` (>= 95 % held-out, 2 CPU cores).

    DNA k-mers make the motif a handful of distinctive tokens, learnt in a few epochs; protein
    residues must be combined in order, which takes more epochs.
    """
    if alphabet == "dna":
        return TrainSpec(scheme="kmer", epochs=5, seed=seed)
    if alphabet == "protein":
        return TrainSpec(scheme="residue", epochs=12, seed=seed)
    raise ValueError(f"alphabet={alphabet!r} is not one of dna, protein")


def validate_train_spec(spec: TrainSpec) -> None:
    """Raises ValueError naming the field that is out of range."""
    if spec.scheme not in SCHEMES:
        raise ValueError(f"scheme={spec.scheme!r} is not one of {', '.join(SCHEMES)}")
    if spec.scheme == "kmer" and not 1 <= spec.k <= 8:
        raise ValueError(f"k={spec.k} must be between 1 and 8")
    if spec.hidden % spec.heads:
        raise ValueError(f"hidden={spec.hidden} must be divisible by heads={spec.heads}")
    for name in ("hidden", "layers", "heads", "intermediate", "epochs", "batch_size"):
        if getattr(spec, name) <= 0:
            raise ValueError(f"{name}={getattr(spec, name)} must be > 0")
    if spec.max_position_embeddings < 3:
        raise ValueError(f"max_position_embeddings={spec.max_position_embeddings} must be >= 3")
    if spec.lr <= 0:
        raise ValueError(f"lr={spec.lr} must be > 0")
    if not 0.0 < spec.holdout < 1.0:
        raise ValueError(f"holdout={spec.holdout} must be in (0, 1)")


def save_tokenizer(
    out_dir: str | Path, scheme: str, k: int = 6, model_max_length: int = 512
) -> Any:
    """Write `vocab.txt` and a BERT tokenizer (no lower-casing) that `AutoTokenizer` loads back.

    Args:
        out_dir: directory to write into (created).
        scheme: `kmer` (specials + 4^k k-mers) or `residue` (specials + 25 residue letters).
        k: k-mer size for `kmer`.
        model_max_length: tokens the model takes, specials included.

    Returns:
        The HF tokenizer.
    """
    from transformers import BertTokenizer

    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not one of {', '.join(SCHEMES)}")
    vocab = build_kmer_vocab(k) if scheme == "kmer" else build_protein_vocab()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file=` here; the vocabulary goes in as a dict.
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        do_lower_case=False,
        model_max_length=model_max_length,
    )
    tokenizer.save_pretrained(str(out))
    return tokenizer


def encode_rows(table: pa.Table, tokenize: Any, max_content: int) -> tuple[list[np.ndarray], int]:
    """Content ids per row, cut to `max_content` tokens.

    Returns:
        (`n_rows` arrays of `[n_tokens]` int64, number of rows that were cut).

    Raises:
        ValueError: a row the tokenizer rejects (named by id).
    """
    ids, cut = [], 0
    for row_id, sequence in zip(
        table["id"].to_pylist(), table["sequence"].to_pylist(), strict=True
    ):
        row = tokenize(sequence)
        if not row.ok:
            raise ValueError(f"row {row_id!r}: cannot train on it ({row.error_code}: {row.error})")
        cut += row.n_tokens > max_content
        ids.append(row.content_ids[:max_content])
    return ids, cut


def collate(
    rows: list[np.ndarray], cls_id: int, sep_id: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """Frame and right-pad content ids (`attribution.predict.pad_batch`, as the engine pads).

    Returns:
        `input_ids` and `attention_mask`, each `[batch, max_tokens + 2]` int64.
    """
    input_ids, mask = pad_batch(frame(rows, cls_id, sep_id), pad_id)
    return {"input_ids": input_ids, "attention_mask": mask}


def frame(rows: list[np.ndarray], cls_id: int, sep_id: int) -> list[np.ndarray]:
    """`[CLS] + ids + [SEP]` per row, `[n_tokens + 2]` int64 each."""
    return [np.concatenate([[cls_id], r, [sep_id]]).astype(np.int64) for r in rows]


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of similar length (little padding) in random order.

    Rows are sorted by length with random tie-breaks, cut into batches, and the batches shuffled,
    so each epoch sees different batch compositions without mixing short and long rows.
    """
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def build_model(spec: TrainSpec, tokenizer: Any) -> torch.nn.Module:
    """A freshly initialised `BertForSequenceClassification` with two labels."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_position_embeddings,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "no_motif", 1: "motif"},
        label2id={"no_motif": 0, "motif": 1},
    )
    return BertForSequenceClassification(config)


def fit(
    model: torch.nn.Module,
    rows: list[np.ndarray],
    labels: np.ndarray,
    spec: TrainSpec,
    specials: tuple[int, int, int],
) -> list[float]:
    """Train in place with AdamW, linear warm-up then linear decay.

    Args:
        rows: training content ids, `n` arrays of `[n_tokens]`.
        labels: `[n]` int class labels.
        specials: `(cls_id, sep_id, pad_id)`.

    Returns:
        Mean training loss per epoch.
    """
    rng = np.random.default_rng(spec.seed)
    lengths = np.array([len(r) for r in rows])
    steps = spec.epochs * -(-len(rows) // spec.batch_size)
    warmup = max(1, int(steps * spec.warmup_fraction))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    model.train()
    losses = []
    for _ in range(spec.epochs):
        total = 0.0
        for batch in length_batches(lengths, spec.batch_size, rng):
            inputs = collate([rows[i] for i in batch], *specials)
            out = model(**inputs, labels=torch.from_numpy(labels[batch]))
            opt.zero_grad()
            out.loss.backward()
            # Post-LN BERT at a demo-sized learning rate diverges now and then without clipping.
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(out.loss.detach()) * len(batch)
        losses.append(total / len(rows))
    return losses


def predict(
    model: torch.nn.Module,
    rows: list[np.ndarray],
    specials: tuple[int, int, int],
    batch_size: int = 64,
) -> np.ndarray:
    """Predicted class per row, `[n]` int64 (rows batched by length through `predict_rows`)."""
    model.eval()
    cls_id, sep_id, pad_id = specials

    def predicted_class(ids: torch.Tensor, mask: torch.Tensor, _rows: list[int]) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits.argmax(-1)

    preds = np.zeros(len(rows), dtype=np.int64)
    predict_rows(predicted_class, frame(rows, cls_id, sep_id), preds, pad_id, max_rows=batch_size)
    return preds


def dataset_hash(table: pa.Table, spec: TrainSpec) -> str:
    """sha256 over the sequences, labels and spec (what decides the trained weights)."""
    digest = hashlib.sha256(_HASH_VERSION.encode())
    digest.update(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    for name in ("id", "sequence", "label"):
        digest.update(f"\0{name}\0".encode())
        digest.update("\n".join(str(v) for v in table[name].to_pylist()).encode())
    return "sha256:" + digest.hexdigest()


def _reusable(out: Path, data_hash: str) -> dict | None:
    path = out / METRICS_FILE
    if not (path.is_file() and (out / "model.safetensors").is_file()):
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("hash") == data_hash else None


def _save_quietly(model: torch.nn.Module, out: Path) -> None:
    """`save_pretrained` (safetensors) without its one-shard progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(out))
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(rows) * holdout))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _check_table(table: pa.Table) -> np.ndarray:
    missing = [c for c in ("id", "sequence", "label") if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {table.column_names}")
    labels = table["label"].to_numpy(zero_copy_only=False).astype(np.int64)
    if table.num_rows < 2 or not np.isin(labels, (0, 1)).all():
        raise ValueError("label must hold 0/1 values for at least two rows")
    return labels


def train_classifier(table: pa.Table, out_dir: str | Path, spec: TrainSpec | None = None) -> dict:
    """Train (or reuse) a tiny BERT classifier on `table` and save it to `out_dir`.

    Args:
        table: rows with `id`, `sequence` and `label` (0/1), e.g. from `demo.data.generate`.
        out_dir: local directory for weights, config, tokenizer and `train_metrics.json`.
        spec: model and training settings; defaults to `TrainSpec()`.

    Returns:
        Metrics: `accuracy` (held-out), `n_train`, `n_test`, `seconds`, `losses`, `n_truncated`,
        `spec`, `hash`, `reused` (True when an identical earlier run was found).

    Raises:
        ValueError: a bad spec, missing columns, non-binary labels or an untokenizable row.
    """
    spec = spec or TrainSpec()
    validate_train_spec(spec)
    labels = _check_table(table)
    out = Path(out_dir)
    data_hash = dataset_hash(table, spec)
    saved = _reusable(out, data_hash)
    if saved is not None:
        return {**saved, "reused": True}
    started = time.perf_counter()
    # The metrics file marks a finished run; drop a stale one so a crash never looks reusable.
    (out / METRICS_FILE).unlink(missing_ok=True)
    torch.manual_seed(spec.seed)
    hf_tok = save_tokenizer(out, spec.scheme, spec.k, spec.max_position_embeddings)
    rows, n_cut = encode_rows(
        table, make_tokenizer(spec.scheme, hf_tok, spec.k), spec.max_position_embeddings - 2
    )
    specials = (hf_tok.cls_token_id, hf_tok.sep_token_id, hf_tok.pad_token_id)
    train_idx, test_idx = _split(labels, spec.holdout, spec.seed)
    model = build_model(spec, hf_tok)
    losses = fit(model, [rows[i] for i in train_idx], labels[train_idx], spec, specials)
    preds = predict(model, [rows[i] for i in test_idx], specials)
    _save_quietly(model, out)
    metrics = {
        "accuracy": float((preds == labels[test_idx]).mean()),
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "seconds": round(time.perf_counter() - started, 2),
        "losses": [round(x, 5) for x in losses],
        "n_truncated": int(n_cut),
        "spec": dataclasses.asdict(spec),
        "hash": data_hash,
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return {**metrics, "reused": False}
