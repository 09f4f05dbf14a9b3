"""Small real models for tests: random-weight BERT classifiers saved with `save_pretrained` and
loaded back through `raysattr.models.load_model` (no hub, no training, a second or two)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from raysattr.config import ModelConfig
from raysattr.models import LoadedModel, load_model
from raysattr.tokenize import build_kmer_vocab, build_protein_vocab


def save_random_bert(
    out_dir: Path,
    vocab: list[str],
    num_labels: int = 2,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 64,
) -> Path:
    """Write a random tiny `BertForSequenceClassification` and its tokenizer to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False).save_pretrained(
        out_dir
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
        num_labels=num_labels,
        initializer_range=0.3,
    )  # wide init: outputs that vary with input
    BertForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir


def dna_rows(n: int, seed: int = 0, id_prefix: str | None = None) -> pa.Table:
    """`n` random DNA rows of 10-50 nt: `id` (`s<seed>-<i>`, or `<id_prefix><i>`), `sequence`,
    `label` (0/1) and a passthrough column `batch_tag`."""
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(10, 50))) for _ in range(n)]
    prefix = f"s{seed}-" if id_prefix is None else id_prefix
    return pa.table(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            "sequence": seqs,
            "label": rng.integers(0, 2, n),
            "batch_tag": [f"t{i % 3}" for i in range(n)],
        }
    )


def random_dna_model(out_dir: Path, k: int = 3, **kwargs) -> LoadedModel:
    save_random_bert(out_dir, build_kmer_vocab(k), **kwargs)
    return load_model(ModelConfig(path=str(out_dir)))


def random_protein_model(out_dir: Path, **kwargs) -> LoadedModel:
    save_random_bert(out_dir, build_protein_vocab(), **kwargs)
    return load_model(ModelConfig(path=str(out_dir)))


def attribute_without_ray(data_path: Path, model_dir: Path, out_dir: Path, *overrides) -> str:
    """Run the pipeline's own stages (read -> tokenize -> attribute -> write) in this process,
    no Ray: `out_dir/attributions/part-*.parquet` as a run writes them. Returns `out_dir`."""
    from raysattr.config import load
    from raysattr.io.sources import list_inputs
    from raysattr.pipeline.stages import AttributeStage, TokenizeStage, WriteStage, read_files

    cfg = load(
        None,
        [
            f"data.uri={data_path}",
            f"model.path={model_dir}",
            f"output.uri={out_dir}",
            "attribution.n_steps=16",
            *overrides,
        ],
    )
    tokenize, attribute = TokenizeStage(cfg), AttributeStage(cfg, run_id="test")
    write = WriteStage(cfg.output.uri)
    for f in list_inputs(cfg.data.uri):
        for block in read_files(pa.table({"uri": [f.uri]}), cfg):
            write(attribute(tokenize(block)))
    return str(out_dir)


def write_motif_database(path: Path, planted: str, n_random: int = 40, seed: int = 11) -> str:
    """A small MEME database (no download): `n_random` random DNA motifs of 6-14 columns and,
    17th, `MA9999.1 PLANTED_TF`, the one-hot matrix of `planted` (5 % noise per column)."""
    from raysattr.stats.motifs import Motif, to_meme

    rng = np.random.default_rng(seed)
    motifs = [
        Motif(f"MA{i:04d}.1", f"TF{i}", "", 0, rng.dirichlet(np.full(4, 0.4), int(w)), 20, 1.0)
        for i, w in enumerate(rng.integers(6, 15, n_random))
    ]
    pwm = np.full((len(planted), 4), 0.05)
    pwm[np.arange(len(planted)), ["ACGT".index(c) for c in planted]] = 0.85
    motifs.insert(17, Motif("MA9999.1", "PLANTED_TF", "", 0, pwm, 50, 1.0))
    path.write_text(to_meme(motifs, "dna"))
    return str(path)


def part_of(consensus: str, planted: str, both_strands: bool = True) -> bool:
    """`consensus` is a piece of `planted` (or, both strands, of its reverse complement),
    allowing one letter of it past either end of `planted`."""
    from raysattr.stats.strands import reverse_complement

    reads = [consensus, reverse_complement(consensus)] if both_strands else [consensus]
    padded = f"?{planted}?"
    return any(
        all(a == "?" or a == b for a, b in zip(padded[i : i + len(c)], c, strict=True))
        for c in reads
        for i in range(len(padded) - len(c) + 1)
    )
