"""The embedded default: a synthetic dataset with a planted motif and a tiny classifier for it.

`build_demo("outputs/demo")` writes `outputs/demo/data/dna.{parquet,csv,fasta,jsonl}` and trains (or
reuses) `outputs/demo/model`, the paths `configs/demo.yaml` points at. The planted motif is the
ground truth the attribution statistics must rank first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from raysattr.demo.data import (
    FORMATS,
    DatasetSpec,
    demo_dna_spec,
    demo_protein_spec,
    generate,
    write,
)
from raysattr.demo.train import TrainSpec, demo_train_spec, save_tokenizer, train_classifier

__all__ = [
    "DatasetSpec",
    "TrainSpec",
    "build_demo",
    "demo_dna_spec",
    "demo_protein_spec",
    "demo_train_spec",
    "generate",
    "save_tokenizer",
    "train_classifier",
    "write",
]


def build_demo(
    out_dir: str | Path = "outputs/demo",
    alphabet: str = "dna",
    log: Callable[[str], None] = print,
) -> dict:
    """Generate the demo dataset in every format and train (or reuse) its classifier.

    Args:
        out_dir: local directory; data goes to `out_dir/data/`, the model to `out_dir/model`
            (`out_dir/model_protein` for the protein demo).
        alphabet: `dna` (the default demo) or `protein`.
        log: receives one short progress line per step.

    Returns:
        `data_dir`, `data_path` (the parquet file), `data` (`{format: path}`), `model_dir`,
        `metrics` (see `train_classifier`), `motif` and `motif_window` (`[start, end)`).
    """
    if alphabet not in ("dna", "protein"):
        raise ValueError(f"alphabet={alphabet!r} is not one of dna, protein")
    out = Path(out_dir)
    spec = demo_dna_spec() if alphabet == "dna" else demo_protein_spec()
    table = generate(spec)
    log(f"demo: {table.num_rows} {alphabet} sequences, motif {spec.motif} in {spec.motif_window}")
    data = {fmt: write(table, out / "data" / f"{alphabet}.{fmt}", fmt) for fmt in FORMATS}
    log(f"demo: wrote {', '.join(data.values())}")
    model_dir = out / ("model" if alphabet == "dna" else "model_protein")
    log(f"demo: training a tiny BERT into {model_dir} (reused when unchanged)")
    metrics = train_classifier(table, model_dir, demo_train_spec(alphabet))
    verb = "reused" if metrics["reused"] else f"trained in {metrics['seconds']:.1f} s"
    log(f"demo: model {verb}; held-out accuracy {metrics['accuracy']:.3f}")
    return {
        "data_dir": str(out / "data"),
        "data_path": data["parquet"],
        "data": data,
        "model_dir": str(model_dir),
        "metrics": metrics,
        "motif": spec.motif,
        "motif_window": list(spec.motif_window),
    }
