"""Benchmark: false-alarm and detection rates of the audit's drift checks.

Run `.venv/bin/python benchmarks/audit.py` (about 25 minutes on 2 loaded cores, most of it
attribution; models and attributions are cached under `--work`, so a rerun costs the statistics
only), `--quick` for a smoke run (fewer pairs and trials).

Data: the planted-motif DNA set of the tests (40-90 nt, `TATAATGCGC` inside residues 10-30 of
every positive) and a planted protein set (30-60 aa, `WHCKYM` inside 5-17), tiny BERTs trained
on them by `raysattr.demo.train`, and a second DNA model trained on shuffled labels. Rows are
attributed once, in this process, by the pipeline's own stages (`--method`, default saliency:
one backward pass, so the study fits on 2 cores; the checks read scores, predictions and
deltas, whatever made them), into pools:

- `dna`, `protein`: fresh rows of the training distribution;
- `destroyed`: the positives of `dna` with the motif overwritten by random letters;
- `new_motif`: positives holding `GGCCTTAAGG` instead (the model never saw it);
- `shifted`: positives holding the motif inside residues 30-40 instead of 10-30;
- `swapped`: rows of `dna` attributed with the shuffled-label model.

A row's attribution depends only on its sequence and the model, so a snapshot is a set of pool
rows: its statistics are computed by the real statistics code (`stats.run.compute_statistics`
on a folder holding them as one part file and a summary.json), then compared by
`audit.drift.run_checks`, exactly as an audit does.

- **False alarms**: each pool is cut at random into disjoint snapshots of `--rows` rows, and
  every pair of snapshots of one cut is compared (full audits); incremental pairs merge the
  second snapshot into the first's statistics state (`audit.scheduled.merge_statistics`) and
  compare the added rows, as an incremental audit does. Pairs of one cut share snapshots, so
  they are not independent: the rate is an estimate over `--pairs` pairs, not a proof.
- **Detection**: per trial, snapshot A (rows of `dna`) and snapshot B (other rows of `dna`) in
  which the motif is destroyed in 10 %, 30 % or 100 % of the positives, the positives carry a new
  motif or the shifted window, or every row comes from the swapped model.

Printed: the false-alarm rate of each check and of the verdict (any check), for the default
thresholds and for variants (other alpha; no effect thresholds), and per real change the
detection rate, the checks that fired and what the first one named. Load average at start and
end: on 2 shared cores, wall times say little; the rates do not depend on them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raysattr.audit.drift import run_checks
from raysattr.audit.samples import Sample, Totals, added_rows, read_sample
from raysattr.audit.scheduled import merge_statistics
from raysattr.config import DriftThresholds, StatsConfig, load
from raysattr.demo.data import DatasetSpec, generate, write
from raysattr.demo.train import TrainSpec, train_classifier
from raysattr.io.rundir import SUMMARY, RunDir
from raysattr.pipeline.stages import AttributeStage, TokenizeStage, WriteStage, read_files
from raysattr.pipeline.summary import RunSummary
from raysattr.stats.passes import local_map
from raysattr.stats.run import compute_statistics, load_state

DNA_MOTIF, NEW_MOTIF, PROTEIN_MOTIF = "TATAATGCGC", "GGCCTTAAGG", "WHCKYM"
DNA = dict(alphabet="dna", min_length=40, max_length=90, motif=DNA_MOTIF, motif_window=(10, 30))
PROTEIN = dict(
    alphabet="protein", min_length=30, max_length=60, motif=PROTEIN_MOTIF, motif_window=(5, 17)
)
CASES = ("destroyed 10 %", "destroyed 30 %", "destroyed 100 %", "new motif", "shifted window",
         "swapped model")  # fmt: skip
VARIANTS = {
    "default": DriftThresholds(),
    "alpha 0.01": replace(DriftThresholds(), alpha=0.01),
    "alpha 1e-4": replace(DriftThresholds(), alpha=1e-4),
    "motif_seqlet_change 0.1": replace(DriftThresholds(), motif_seqlet_change=0.1),
    "no effect thresholds": DriftThresholds(0.001, 0, 0, 0, 0, 0, 0, 0),
}


# ------------------------------------------------------------------------------ models, pools
def models(work: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Of the DNA, shuffled-label DNA and protein models, those in `names` (trained once,
    reused when cached)."""
    dna = generate(DatasetSpec(n_rows=600, positive_fraction=0.5, seed=1, **DNA))
    labels = np.random.default_rng(0).permutation(dna["label"].to_numpy())
    shuffled = dna.set_column(dna.schema.get_field_index("label"), "label", pa.array(labels))
    protein = generate(DatasetSpec(n_rows=400, positive_fraction=0.5, seed=1, **PROTEIN))
    out = {}
    for name, table, spec in (
        ("dna", dna, TrainSpec(scheme="kmer", k=6, epochs=8, seed=0)),
        ("shuffled", shuffled, TrainSpec(scheme="kmer", k=6, epochs=8, seed=0)),
        ("protein", protein, TrainSpec(scheme="residue", epochs=12, seed=0)),
    ):
        if name not in names:
            continue
        metrics = train_classifier(table, work / "models" / name, spec)
        print(f"  model {name}: held-out accuracy {metrics['accuracy']:.3f}", flush=True)
        out[name] = work / "models" / name
    return out


def destroy(table: pa.Table, seed: int) -> pa.Table:
    """The positives of `table` with the planted motif overwritten by random letters."""
    rng = np.random.default_rng(seed)
    pos = table.filter(pc.equal(table["label"], 1))
    seqs = []
    for seq, start in zip(pos["sequence"].to_pylist(), pos["motif_start"].to_pylist(), strict=True):
        while True:
            filler = "".join(rng.choice(list("ACGT"), len(DNA_MOTIF)))
            new = seq[:start] + filler + seq[start + len(DNA_MOTIF) :]
            if DNA_MOTIF not in new:
                break
        seqs.append(new)
    ids = [f"{i}-x" for i in pos["id"].to_pylist()]
    return pos.set_column(0, "id", pa.array(ids)).set_column(1, "sequence", pa.array(seqs))


def attribute(table: pa.Table, model: Path, work: Path, name: str, method: str) -> pa.Table:
    """`table`'s rows attributed by the pipeline's stages in this process (cached)."""
    cached = work / "pools" / f"{name}-{method}.parquet"
    if cached.exists():
        return pq.read_table(cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    data = work / "pools" / f"{name}-input.parquet"
    write(table, data, "parquet")
    scheme = ["tokenize.scheme=residue"] if name == "protein" else []
    cfg = load("configs/audit.yaml", [f"data.uri={data}", f"model.path={model}",
               f"attribution.method={method}", "output.uri=unused", *scheme])  # fmt: skip
    tokenize, attribute_stage = TokenizeStage(cfg), AttributeStage(cfg, run_id=name)
    started = time.perf_counter()
    blocks = [attribute_stage(tokenize(b)) for b in read_files(pa.table({"uri": [str(data)]}), cfg)]
    out = pa.concat_tables(blocks)
    out = out.select([c for c in out.column_names if not c.startswith("_")])
    pq.write_table(out, cached)
    rate = out.num_rows / (time.perf_counter() - started)
    print(f"  attributed {name}: {out.num_rows} rows, {rate:.1f} rows/s", flush=True)
    return out


def pools(work: Path, method: str, n_dna: int, n_protein: int, part: str) -> dict[str, pa.Table]:
    """The attributed pools of `part` (dna, protein or all)."""
    if part == "protein":
        m = models(work, ("protein",))
        protein = generate(DatasetSpec(n_rows=n_protein, positive_fraction=0.5, seed=11, **PROTEIN))
        return {"protein": attribute(protein, m["protein"], work, "protein", method)}
    m = models(work, ("dna", "shuffled") if part == "dna" else ("dna", "shuffled", "protein"))
    dna = generate(DatasetSpec(n_rows=n_dna, positive_fraction=0.5, seed=11, **DNA))
    new = generate(DatasetSpec(n_rows=n_dna // 3, positive_fraction=1.0, seed=12,
                               **{**DNA, "motif": NEW_MOTIF}))  # fmt: skip
    shifted = generate(DatasetSpec(n_rows=n_dna // 3, positive_fraction=1.0, seed=13,
                                   **{**DNA, "motif_window": (30, 40)}))  # fmt: skip
    out = {
        "dna": attribute(dna, m["dna"], work, "dna", method),
        "destroyed": attribute(destroy(dna, 0), m["dna"], work, "destroyed", method),
        "new_motif": attribute(new, m["dna"], work, "new_motif", method),
        "shifted": attribute(shifted, m["dna"], work, "shifted", method),
        "swapped": attribute(dna.slice(0, n_dna // 2), m["shuffled"], work, "swapped", method),
    }
    return out if part == "dna" else {**out, **pools(work, method, n_dna, n_protein, "protein")}


# ---------------------------------------------------------------------------------- snapshots
class Snapshots:
    """Statistics of sets of pool rows, each in its own folder under a temp dir."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0

    def folder(self, rows: pa.Table) -> str:
        self.count += 1
        uri = str(self.root / f"s{self.count:05d}")
        summary = RunSummary()
        summary.add(WriteStage(uri)(rows))
        dup = SimpleNamespace(duplicate_examples=[], n_duplicate_ids=0)
        RunDir(uri).write_json(SUMMARY, summary.finish(0.0, rows.num_rows, dup, []))
        return uri

    def full(self, rows: pa.Table, stats: StatsConfig) -> tuple[str, Sample]:
        uri = self.folder(rows)
        compute_statistics(uri, stats)
        return uri, read_sample(uri, Totals.of_summary(RunDir(uri).read_json(SUMMARY)))

    def incremental(self, first: tuple[str, Sample], rows: pa.Table) -> Sample:
        """The rows `rows` added to `first` as an incremental audit adds them."""
        uri = self.folder(rows)
        merge_statistics(uri, load_state(first[0]), local_map)
        totals = first[1].totals + Totals.of_summary(RunDir(uri).read_json(SUMMARY))
        return added_rows(read_sample(uri, totals), first[1])


def cuts(n: int, size: int, seed: int) -> list[np.ndarray]:
    """A random cut of `range(n)` into disjoint index sets of `size`."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + size] for i in range(0, n - size + 1, size)]


def false_alarms(pool, snaps, stats, rows: int, pairs: int, incremental: int, seed: int):
    """Verdicts per variant over same-distribution pairs: `{variant: [failed check names]}`."""
    out = {v: [] for v in VARIANTS}
    done_full = done_inc = 0
    for cut_no in itertools.count():
        if done_full >= pairs and done_inc >= incremental:
            return out, done_full, done_inc
        parts = cuts(pool.num_rows, rows, seed + cut_no)
        # an incremental pair needs only its first snapshot's statistics
        wanted = range(len(parts)) if done_full < pairs else range(0, len(parts) - 1, 2)
        samples = {i: snaps.full(pool.take(parts[i]), stats) for i in wanted}
        for i, j in itertools.combinations(range(len(parts)), 2):
            if done_full < pairs and j in samples:
                _judge(out, samples[i][1], samples[j][1])
                done_full += 1
        for i in range(0, len(parts) - 1, 2):
            if done_inc < incremental:
                _judge(out, samples[i][1], snaps.incremental(samples[i], pool.take(parts[i + 1])))
                done_inc += 1
        print(f"    cut {cut_no}: {done_full} full, {done_inc} incremental pairs", flush=True)


def _judge(out: dict, before: Sample, after: Sample, top_k: int = 20) -> None:
    for name, t in VARIANTS.items():
        out[name].append(run_checks(before, after, top_k, t)["drift"])


# ---------------------------------------------------------------------------------- detection
def changed_snapshot(case: str, b: pa.Table, p: dict, rng) -> pa.Table:
    """Snapshot B of a real change built from B's rows of the `dna` pool."""
    positives = b.filter(pc.equal(b["label"], 1))
    negatives = b.filter(pc.equal(b["label"], 0))
    if case.startswith("destroyed"):
        share = int(case.split()[1]) / 100
        chosen = rng.choice(positives.num_rows, round(share * positives.num_rows), replace=False)
        ids = set(positives.take(chosen)["id"].to_pylist())
        keep = positives.filter(pc.invert(pc.is_in(positives["id"], pa.array(list(ids)))))
        gone = p["destroyed"].filter(
            pc.is_in(p["destroyed"]["id"], pa.array([f"{i}-x" for i in ids]))
        )
        return pa.concat_tables([negatives, keep, gone], promote_options="permissive")
    if case in ("new motif", "shifted window"):
        pool = p["new_motif" if case == "new motif" else "shifted"]
        swap = pool.take(rng.choice(pool.num_rows, positives.num_rows, replace=False))
        return pa.concat_tables([negatives, swap], promote_options="permissive")
    return p["swapped"].filter(pc.is_in(p["swapped"]["id"], b["id"]))  # swapped model


def detection(p: dict, snaps, stats, rows: int, trials: int, seed: int) -> dict:
    """`{case: [(failed checks, what the first failed check named)]}` over trials."""
    out = {c: [] for c in CASES}
    # B's rows must be rows the swapped model attributed too; A's are the others
    swappable = pc.is_in(p["dna"]["id"], p["swapped"]["id"]).to_numpy(zero_copy_only=False)
    for t in range(trials):
        rng = np.random.default_rng(seed + t)
        order = rng.permutation(p["dna"].num_rows)
        b_idx = order[swappable[order]][:rows]
        a_idx = order[~swappable[order]][:rows]
        before = snaps.full(p["dna"].take(a_idx), stats)[1]
        for case in CASES:
            b = changed_snapshot(case, p["dna"].take(b_idx), p, rng)
            result = run_checks(before, snaps.full(b, stats)[1], 20, DriftThresholds())
            fired = [c for c in result["checks"] if not c["passed"]]
            named = f"{fired[0]['where']} {fired[0]['change']:+.2f}" if fired else ""
            out[case].append(([c["name"] for c in fired], named))
        print(f"    trial {t}: done", flush=True)
    return out


# ------------------------------------------------------------------------------------- report
def report_false_alarms(title: str, verdicts: dict) -> None:
    n = len(verdicts["default"])
    names = sorted({c for v in verdicts.values() for d in v for c in d} | {"(verdict)"})
    print(f"\n{title}: {n} pairs; rate of pairs where a check found drift")
    print("| check | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for check in names:
        cells = []
        for v in VARIANTS:
            hits = sum(bool(d) if check == "(verdict)" else check in d for d in verdicts[v])
            cells.append(f"{hits}/{n} ({100 * hits / n:.1f} %)")
        print(f"| {check} | " + " | ".join(cells) + " |")


def report_detection(found: dict) -> None:
    print("\nDetection (default thresholds): trials detected, checks that fired (trials), named")
    print("| change | detected | checks fired | first check named (trial 0) |")
    print("|---|---|---|---|")
    for case, trials in found.items():
        hits = sum(bool(f) for f, _ in trials)
        counts = {}
        for fired, _ in trials:
            for name in fired:
                counts[name] = counts.get(name, 0) + 1
        fired = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items(), key=lambda x: -x[1]))
        print(f"| {case} | {hits}/{len(trials)} | {fired or '-'} | {trials[0][1] or '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="outputs/bench-audit", help="cache: models, pools")
    parser.add_argument("--method", default="saliency", help="attribution.method of the pools")
    parser.add_argument("--rows", type=int, default=300, help="rows per snapshot")
    parser.add_argument("--pairs", type=int, default=100, help="full DNA pairs")
    parser.add_argument("--incremental-pairs", type=int, default=50)
    parser.add_argument("--protein-pairs", type=int, default=50)
    parser.add_argument("--trials", type=int, default=5, help="per real change")
    parser.add_argument("--quick", action="store_true", help="10 pairs of each kind, 1 trial")
    parser.add_argument(
        "--part", default="all", choices=("all", "dna", "protein"), help="run one part only"
    )
    parser.add_argument("--seed", type=int, default=0, help="added to every cut's/trial's seed")
    args = parser.parse_args()
    if args.quick:
        args.pairs = args.incremental_pairs = args.protein_pairs = 10
        args.trials = 1
    started, load_start = time.perf_counter(), os.getloadavg()
    print(f"load average at start: {load_start}", flush=True)
    work = Path(args.work)
    p = pools(work, args.method, 6 * args.rows, 4 * args.rows, args.part)
    dna_stats = load("configs/audit.yaml").stats
    with tempfile.TemporaryDirectory() as tmp:
        snaps = Snapshots(Path(tmp))
        if "dna" in p:
            print("  same-distribution pairs (DNA)", flush=True)
            dna, n_full, n_inc = false_alarms(
                p["dna"],
                snaps,
                dna_stats,
                args.rows,
                args.pairs,
                args.incremental_pairs,
                100 + args.seed,
            )
            print("  real changes", flush=True)
            found = (
                detection(p, snaps, dna_stats, args.rows, args.trials, 300 + args.seed)
                if args.trials
                else {}
            )
        if "protein" in p:
            print("  same-distribution pairs (protein)", flush=True)
            protein, *_ = false_alarms(
                p["protein"],
                snaps,
                StatsConfig(),
                args.rows,
                args.protein_pairs,
                0,
                200 + args.seed,
            )
    print(f"\nmethod {args.method}, {args.rows} rows per snapshot")
    if "dna" in p:
        report_false_alarms(f"False alarms, DNA ({n_full} full + {n_inc} incremental)", dna)
        if found:
            report_detection(found)
    if "protein" in p:
        report_false_alarms("False alarms, protein (full)", protein)
    wall = time.perf_counter() - started
    print(f"\nwall {wall:.0f} s; load average at start {load_start}, end {os.getloadavg()}")


if __name__ == "__main__":
    main()
