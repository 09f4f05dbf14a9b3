"""`raysattr plan`: exact row and token counts from the pipeline's own read and tokenize stages,
the bucket plan, the evaluations the method contract implies, the probe, and the CLI. The
estimate's accuracy against a real run is a benchmark (benchmarks/plan.py), not a test."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysattr.cli import main
from raysattr.config import load
from raysattr.pipeline.costplan import STARTUP_S, evaluations, make_plan
from raysattr.pipeline.stages import length_bucket
from raysattr.tokenize import build_kmer_vocab

from .factories import save_random_bert

K = 3
MAX_POSITIONS = 64  # content limit 62 tokens


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two parquet files: lengths chosen per row; an empty sequence, a later copy of an id and
    a row of 100 nt (98 tokens: windowed) among them."""
    root = tmp_path_factory.mktemp("costplan")
    model = save_random_bert(root / "model", build_kmer_vocab(K), max_positions=MAX_POSITIONS)
    data = root / "data"
    data.mkdir()
    a = {"id": ["a0", "a1", "a2", "a3"], "sequence": ["ACGTAC", "A" * 20, "", "C" * 100]}
    b = {"id": ["b0", "a1", "b2"], "sequence": ["G" * 40, "ACGTACGT", "T" * 9]}
    for name, cols in (("a", a), ("b", b)):
        pq.write_table(pa.table({**cols, "label": [0] * len(cols["id"])}), data / f"{name}.parquet")
    return model, data, root


def _cfg(inputs, *extra):
    model, data, root = inputs
    base = [
        f"data.uri={data}",
        f"model.path={model}",
        f"tokenize.k={K}",
        "tokenize.long_policy=window",
        f"output.uri={root / 'out'}",
        "attribution.method=saliency",
        "compute.max_actors=3",
    ]
    return load(None, [*base, *extra])


def test_counts_rows_tokens_windows_and_buckets_exactly(inputs):
    plan = make_plan(_cfg(inputs), tokens_per_s=1000.0)
    c = plan.counts
    assert list(c.files.values()) == [4, 3] and c.rows == 7
    assert c.errors == {"duplicate_id": 1, "empty_sequence": 1} and c.ok_rows == 5
    ok_lengths = [6, 20, 100, 40, 9]  # nucleotides of the ok rows
    tokens = [n - K + 1 for n in ok_lengths]  # 4, 18, 98, 38, 7
    assert c.tokens == sum(tokens)
    # 98 tokens over a 62-token limit, stride 31: windows at 0, 18, 36 -> 3 windows of 62.
    assert c.windows == 4 + 3
    assert c.evaluated_tokens == sum(t + 2 for t in tokens if t <= 62) + 3 * (62 + 2)
    by_bucket = {b.bucket: (b.rows, b.tokens) for b in c.buckets.values()}
    expected: dict[int, tuple[int, int]] = {}
    for t in tokens:
        rows, total = expected.get(length_bucket(t), (0, 0))
        expected[length_bucket(t)] = (rows + 1, total + t)
    assert by_bucket == expected


def test_limit_counts_only_the_rows_a_run_reads(inputs):
    plan = make_plan(_cfg(inputs, "data.limit=3"), tokens_per_s=1000.0)
    assert plan.counts.rows == 3 and plan.counts.tokens == (6 - 2) + (20 - 2)


def test_estimate_adds_up_and_scales_with_actors(inputs):
    three = make_plan(_cfg(inputs), tokens_per_s=500.0)
    one = make_plan(_cfg(inputs), actors=1, tokens_per_s=500.0)
    assert three.actors == 3 and one.actors == 1
    assert three.compute_s == pytest.approx(three.counts.evaluated_tokens / (500.0 * 3))
    assert one.compute_s == pytest.approx(3 * three.compute_s)
    assert three.startup_s == STARTUP_S and three.probe.source == "given"
    assert three.wall_s == pytest.approx(three.counts.seconds + STARTUP_S + three.compute_s)
    assert three.actor_hours == pytest.approx(3 * three.wall_s / 3600)
    assert three.gpu_hours == 0.0


def test_evaluations_follow_the_method_contract(inputs):
    gradient = evaluations(_cfg(inputs), num_labels=2)
    assert (gradient.low, gradient.high, gradient.rule) == (1.0, 1.0, "one gradient")
    fixed = evaluations(
        _cfg(
            inputs,
            "attribution.method=ig",
            "attribution.quadrature=fixed",
            "attribution.n_steps=24",
        ),
        num_labels=2,
    )
    assert (fixed.low, fixed.high, fixed.rule) == (24.0, 24.0, "fixed")
    path = evaluations(
        _cfg(inputs, "attribution.method=ig", "attribution.max_evals=40", "attribution.target=all"),
        num_labels=2,
    )
    assert path.rule == "path" and path.high == 40.0 and 9 < path.low < 40
    assert path.targets == 2


def test_probe_measures_this_machine(inputs):
    plan = make_plan(_cfg(inputs, "attribution.method=ig"), probe_rows=3)
    p = plan.probe
    assert p.source == "probe" and p.rows == 3 and p.seconds > 0 and p.tokens_per_s > 0
    assert plan.startup_s == pytest.approx(STARTUP_S + p.load_s)
    assert plan.evaluations.measured is not None and plan.evaluations.measured >= 9


def test_cli_plan_json(inputs, capsys):
    model, data, root = inputs
    (root / "plan.yaml").write_text("{}\n")
    argv = ["plan", "--json", "--tokens-per-s", "2000", "--actors", "2", str(root / "plan.yaml")]
    argv += [f"data.uri={data}", f"model.path={model}", f"tokenize.k={K}"]
    argv += [f"output.uri={root / 'out'}", "tokenize.long_policy=window"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["rows"] == 7 and out["actors"] == 2
    assert [b["bucket"] for b in out["counts"]["buckets"]] == sorted(
        b["bucket"] for b in out["counts"]["buckets"]
    )
    assert out["wall_s"] > 0 and out["probe"]["tokens_per_s"] == 2000
