"""Unconverged rows carried from the engine to `summary.json`, the report, the end-of-run line
and the statistics (issue 12), on the pipeline's own stages without Ray."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from raysattr.config import RunConfig, to_dict
from raysattr.io.results import read_attributions
from raysattr.io.scan import InputScan
from raysattr.pipeline.stages import WriteStage
from raysattr.pipeline.summary import RunSummary
from raysattr.report.build import render_report
from raysattr.stats.flat import flatten
from raysattr.tokenize import build_kmer_vocab

from .factories import attribute_without_ray, dna_rows, save_random_bert


def test_unconverged_rows_reach_summary_report_and_statistics(tmp_path):
    pq.write_table(dna_rows(12), tmp_path / "in.parquet")
    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3), max_positions=64)
    out = tmp_path / "out"
    tight = ("tokenize.k=3", "attribution.delta_tolerance=0.01", "attribution.max_evals=12")
    attribute_without_ray(tmp_path / "in.parquet", model, out, *tight)
    table = read_attributions(str(out))
    flags = table.column("converged").to_pylist()
    rel = table.column("delta_rel").to_pylist()
    assert flags == [r <= 0.01 for r in rel] and 0 < flags.count(False) < len(flags)

    summary = RunSummary()
    summary.add(table.select([c for c in WriteStage.SUMMARY_COLUMNS if c in table.column_names]))
    cfg = to_dict(RunConfig())
    cfg["attribution"]["delta_tolerance"] = 0.01
    done = summary.finish(1.0, table.num_rows, InputScan({}, table.num_rows, 0), [], config=cfg)
    conv = done["convergence"]
    assert conv["unconverged"] == flags.count(False) and conv["fp32_recomputed"] == 0
    ids = table.column("id").to_pylist()
    worst = max((r, i) for r, i, ok in zip(rel, ids, flags, strict=True) if not ok)
    assert conv["worst"][0]["id"] == worst[1]
    (out / "summary.json").write_text(json.dumps(done))

    html = render_report(str(out))
    section = html.split('<section id="unconverged">')[1].split("</section>")[0]
    assert f"{flags.count(False)} of {table.num_rows} ok rows" in section and worst[1] in section

    kept = flatten(table, exclude_unconverged=True)
    assert sorted(kept.ids) == sorted(i for i, ok in zip(ids, flags, strict=True) if ok)
    assert len(flatten(table).ids) == table.num_rows
