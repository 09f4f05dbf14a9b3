"""report.html: built from a real run directory (engine attributions of the trained DNA model,
a RunSummary) plus small statistics/qc/audit files that follow the output contract, then read
as text and opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raysattr.attribution import AttributionEngine
from raysattr.attribution.table import results_to_table
from raysattr.config import AttributionConfig, ModelConfig, ReportConfig, RunConfig, to_dict
from raysattr.io.scan import InputScan
from raysattr.models import load_model
from raysattr.pipeline.stages import WriteStage, length_bucket
from raysattr.pipeline.summary import RunSummary
from raysattr.report.build import SECTION_IDS, build_report, render_report
from raysattr.report.inputs import PRODUCERS, read_meme_text
from raysattr.report.ranking import fetch_rows, row_score_sums, scan_attributions
from raysattr.report.svg import information_content
from raysattr.tokenize import error_row, make_tokenizer

from .conftest import DNA_MOTIF

EVIL_ID = "<script>alert('x')</script>"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "outputs" / "test-artifacts"
TALLEST_JS = "els => Math.max(...els.map(e => e.getBoundingClientRect().height))"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- a run directory ---------------------------------------------------------------------------
def _attribute(dna_table: pa.Table, model_dir: Path) -> pa.Table:
    """38 rows of the DNA set + one error row + one row whose id is markup, through the engine."""
    loaded = load_model(ModelConfig(path=str(model_dir)))
    tokenize = make_tokenizer("kmer", loaded.tokenizer, k=6)
    part = dna_table.slice(0, 38).to_pylist()
    part.append({**part[0], "id": EVIL_ID})
    part.append({**part[1], "id": "empty-row", "sequence": ""})
    rows = [tokenize(r["sequence"]) if r["sequence"] else error_row("empty_sequence", "empty")
            for r in part]  # fmt: skip
    inputs = pa.table(
        {
            "id": [r["id"] for r in part],
            "label": pa.array([r["label"] for r in part], pa.int64()),
            "residues": [row.residues for row in rows],
            "bucket": pa.array([length_bucket(row.n_tokens) for row in rows], pa.int32()),
            "motif_start": [r["motif_start"] for r in part],
        }
    )
    engine = AttributionEngine(loaded, AttributionConfig(method="lig", n_steps=16))
    results = engine.run(rows, inputs.column("label").to_pylist())
    provenance = {"run_id": "test-run", "model_fingerprint": loaded.fingerprint}
    return results_to_table(results, inputs, "lig", provenance)


def _write_base(root: Path, table: pa.Table) -> None:
    """attributions/ in two part files and summary.json, as the pipeline writes them."""
    (root / "attributions").mkdir(parents=True)
    pq.write_table(table.slice(0, 17), root / "attributions" / "part-a.parquet")
    pq.write_table(table.slice(17), root / "attributions" / "part-b.parquet")
    summary = RunSummary()
    summary.add(table.select([c for c in WriteStage.SUMMARY_COLUMNS if c in table.column_names]))
    versions = {"raysattr": "0.1.0", "pyarrow": pa.__version__}
    scan = InputScan({}, table.num_rows, 0)
    result = summary.finish(wall_s=2.5, input_rows=table.num_rows, duplicates=scan,
                            quarantined=[], run_id="test-run", config=to_dict(RunConfig()),
                            inputs=[], versions=versions)  # fmt: skip
    (root / "summary.json").write_text(json.dumps(result))


def _position_stats(table: pa.Table, bins: int = 10) -> pa.Table:
    """position_stats.parquet computed from the real rows (groups all and label)."""
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    out = []
    for group, key in (("all", lambda r: -1), ("label", lambda r: r["label"])):
        for value in sorted({key(r) for r in ok}):
            rows = [r for r in ok if key(r) == value]
            for axis in ("position", "relative"):
                out += _profile(rows, group, value, axis, bins)
    cols = ("group", "group_value", "axis", "index", "count", "mean", "std", "mean_abs",
            "top_decile_share")  # fmt: skip
    types = [pa.string(), pa.int64(), pa.string(), pa.int64(), pa.int64()] + [pa.float64()] * 4
    return pa.table(
        {
            c: pa.array([r[i] for r in out], t)
            for i, (c, t) in enumerate(zip(cols, types, strict=True))
        }
    )


def _profile(rows: list[dict], group: str, value: int, axis: str, bins: int) -> list[tuple]:
    cells: dict[int, list[tuple[float, bool]]] = {}
    for r in rows:
        scores = np.asarray(r["residue_attr"])
        top = scores >= np.quantile(scores, 0.9)
        for i, s in enumerate(scores):
            index = i if axis == "position" else int(i * bins / len(scores))
            cells.setdefault(index, []).append((s, top[i]))
    out = []
    for index, items in sorted(cells.items()):
        s, t = np.array([x[0] for x in items]), np.array([x[1] for x in items])
        out.append(
            (group, value, axis, index, len(s), s.mean(), s.std(), np.abs(s).mean(), t.mean())
        )
    return out


def _table(columns: dict[str, tuple[pa.DataType, list]]) -> pa.Table:
    return pa.table({name: pa.array(values, t) for name, (t, values) in columns.items()})


def _motif_stats() -> pa.Table:
    i64, f64 = pa.int64(), pa.float64()
    motifs = [DNA_MOTIF[:6], "ACGTAC", DNA_MOTIF[2:8]]
    n = len(motifs)
    return _table(
        {
            "k": (i64, [6] * n), "motif": (pa.string(), motifs), "class": (i64, [1, 0, 1]),
            "class_source": (pa.string(), ["label"] * n), "occurrences": (i64, [40, 12, 35]),
            "rows_with": (i64, [19, 11, 18]), "in_seqlets": (i64, [38, 1, 30]),
            "outside_seqlets": (i64, [2, 11, 5]), "score_mean": (f64, [0.05, 0.0, 0.04]),
            "score_total": (f64, [2.0, 0.0, 1.4]), "abs_score_mean": (f64, [0.05, 0.01, 0.04]),
            "seqlet_odds": (f64, [50.0, 0.2, 20.0]), "seqlet_log10_p": (f64, [-12.0, -0.1, -8.0]),
            "seqlet_q": (f64, [1e-11, 0.9, 1e-7]), "class_odds": (f64, [30.0, 0.5, 15.0]),
            "class_log10_p": (f64, [-9.0, -0.2, -6.0]), "class_q": (f64, [1e-8, 0.8, 1e-5]),
            "log10_p": (f64, [-9.0, -0.1, -6.0]), "q": (f64, [1e-8, 0.9, 1e-5]),
            "significant": (pa.bool_(), [True, False, True]), "rank": (i64, [1, 3, 2]),
            "rank_in_class": (i64, [1, 1, 2]),
        }
    ).sort_by("rank")  # fmt: skip


def _seqlets(table: pa.Table) -> pa.Table:
    """One seqlet per ok row of class 1, around its highest-scoring residue."""
    rows = [r for r in table.to_pylist() if r["status"] == "ok" and r["label"] == 1][:10]
    names = ("id", "class", "start", "end", "core_start", "core_end", "sequence", "score",
             "abs_score", "peak", "motif")  # fmt: skip
    cols: dict[str, list] = {c: [] for c in names}
    for r in rows:
        scores = np.asarray(r["residue_attr"])
        peak = int(scores.argmax())
        start, end = max(peak - 6, 0), min(peak + 6, len(scores))
        core = float(scores[start + 3 : end - 3].sum())
        values = (r["id"], 1, start, end, start + 3, end - 3, r["sequence"][start:end], core,
                  abs(core), peak, 0)  # fmt: skip
        for name, v in zip(cols, values, strict=True):
            cols[name].append(v)
    types = {
        "id": pa.string(),
        "sequence": pa.string(),
        "score": pa.float64(),
        "abs_score": pa.float64(),
    }
    return _table({c: (types.get(c, pa.int64()), v) for c, v in cols.items()})


def _meme() -> str:
    letters = "ACGT"
    lines = ["MEME version 4", "", f"ALPHABET= {letters}", "", "strands: + -", ""]
    for name, consensus, p in (("m1", DNA_MOTIF, 0.85), ("m2", "ACGTAC", 0.4)):
        lines += [f"MOTIF {name} {consensus}", f"letter-probability matrix: alength= 4 "
                  f"w= {len(consensus)} nsites= 20 E= 1e-5"]  # fmt: skip
        for c in consensus:
            lines.append(" ".join(f"{p if a == c else (1 - p) / 3:.4f}" for a in letters))
        lines.append("")
    return "\n".join(lines)


def _extras(root: Path, table: pa.Table) -> None:
    """Every optional file of the contract, small."""
    pq.write_table(_position_stats(table), root / "position_stats.parquet")
    pq.write_table(_motif_stats(), root / "motif_stats.parquet")
    pq.write_table(_seqlets(table), root / "seqlets.parquet")
    (root / "motifs.meme").write_text(_meme())
    stats = {"rows": table.num_rows, "rows_ok": table.num_rows - 1, "alphabet": "dna",
             "class_source": "label", "threshold": 0.01, "n_seqlets": 10, "n_seqlets_kept": 10,
             "kmer_sizes": [6], "wall_s": 1.0}  # fmt: skip
    (root / "stats.json").write_text(json.dumps(stats))
    i64, f64, s = pa.int64(), pa.float64(), pa.string()
    hist = [[0] * 10 + [1, 2, 3, 5, 8, 6, 4, 2, 1, 0], [2] * 20]
    pq.write_table(_table({
        "metric": (s, ["agree_last_cosine_raw", "agree_last_spearman"]), "group": (s, ["all"] * 2),
        "group_value": (i64, [-1, -1]), "count": (i64, [32, 40]), "mean": (f64, [0.3, 0.0]),
        "std": (f64, [0.2, 0.5]), "min": (f64, [-0.1, -1.0]), "max": (f64, [0.9, 1.0]),
        "hist": (pa.list_(i64), hist)}), root / "agreement_stats.parquet")  # fmt: skip
    grid = [(g, v, layer, b) for g, v in (("all", -1), ("label", 0), ("label", 1))
            for layer in range(3) for b in range(8)]  # fmt: skip
    pq.write_table(_table({
        "group": (s, [x[0] for x in grid]), "group_value": (i64, [x[1] for x in grid]),
        "layer": (i64, [x[2] for x in grid]), "bin": (i64, [x[3] for x in grid]),
        "count": (i64, [10] * len(grid)),
        "mean": (f64, [np.sin(x[2] + x[3]) * (x[1] + 2) for x in grid]),
        "mean_abs": (f64, [abs(np.sin(x[2] + x[3])) for x in grid])}),
        root / "layer_stats.parquet")  # fmt: skip
    qc = [(f"dna-{i}", fr, order) for i in range(4) for fr in (0.05, 0.1, 0.2, 0.5)
          for order in ("attribution", "random")]  # fmt: skip
    pq.write_table(_table({
        "id": (s, [q[0] for q in qc]), "target": (i64, [1] * len(qc)),
        "length": (i64, [60] * len(qc)),
        "n_tokens": (i64, [55] * len(qc)), "fraction": (f64, [q[1] for q in qc]),
        "order": (s, [q[2] for q in qc]), "p_full": (f64, [0.99] * len(qc)),
        "p_deleted": (f64, [0.99 - q[1] * (1.8 if q[2] == "attribution" else 0.4) for q in qc]),
        "p_inserted": (f64, [q[1] * (1.8 if q[2] == "attribution" else 0.4) for q in qc])}),
        root / "qc.parquet")  # fmt: skip
    (root / "qc.json").write_text(json.dumps({
        "aopc_comprehensiveness": {"attribution": 0.4, "random": 0.1},
        "aopc_sufficiency": {"attribution": 0.05, "random": 0.3}, "n_rows": 4,
        "n_skipped": {"error": 1}, "baseline_max_abs_attr": 0.0}))  # fmt: skip
    (root / "audit.json").write_text(json.dumps({
        "status": "drift", "previous": "/runs/previous", "checks": [
            {"name": "error_rate", "value": 0.025, "threshold": 0.01, "passed": False,
             "detail": "1 error row of 40"},
            {"name": "top_motif_kept", "value": 1.0, "threshold": 1.0, "passed": True,
             "detail": ""}],
        "drift": ["error_rate"], "motifs_gained": ["ACGTAC"], "motifs_lost": []}))  # fmt: skip


@pytest.fixture(scope="module")
def attributions(dna_table, dna_model_dir) -> pa.Table:
    return _attribute(dna_table, dna_model_dir)


@pytest.fixture(scope="module")
def full_run(attributions, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_full")
    _write_base(root, attributions)
    _extras(root, attributions)
    return root


@pytest.fixture(scope="module")
def bare_run(attributions, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_bare")
    _write_base(root, attributions)
    return root


# --- the HTML text -----------------------------------------------------------------------------
class _Sections(HTMLParser):
    """Text of each `<section id=...>` and every src/href/url() value of the page."""

    def __init__(self):
        super().__init__()
        self.text: dict[str, str] = {}
        self.links: list[str] = []
        self.tags: list[str] = []
        self.current = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs.get("id")
            self.text[self.current] = ""
        self.links += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href") and v]
        self.links += re.findall(r"url\(([^)]*)\)", attrs.get("style") or "")

    def handle_data(self, data):
        if self.current:
            self.text[self.current] += data


def _parse(text: str) -> _Sections:
    parser = _Sections()
    parser.feed(text)
    return parser


def test_every_section_present_and_nothing_external(full_run):
    text = (Path(build_report(str(full_run)))).read_text()
    parsed = _parse(text)
    assert list(parsed.text) == list(SECTION_IDS)
    assert all(link.startswith("#") for link in parsed.links), parsed.links
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    assert not {"script", "link", "iframe", "img", "object"} & set(parsed.tags)
    assert "Content-Security-Policy" in text
    for section, body in parsed.text.items():
        assert "Not available" not in body, section
    assert DNA_MOTIF in parsed.text["motifs"] and "error_rate" in parsed.text["audit"]
    assert "empty_sequence" in parsed.text["summary"]


def test_data_is_escaped(full_run):
    text = render_report(str(full_run), ReportConfig(top_n=40))
    assert EVIL_ID not in text and "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text


def test_missing_files_name_the_command_that_produces_them(bare_run):
    parsed = _parse(render_report(str(bare_run)))
    expect = {
        "positions": "position_stats.parquet",
        "motifs": "motif_stats.parquet",
        "agreement": "agreement_stats.parquet",
        "layers": "layer_stats.parquet",
        "faithfulness": "qc.parquet",
        "audit": "audit.json",
    }
    for section, file in expect.items():
        body = parsed.text[section]
        assert f"{file} is missing" in body and PRODUCERS[file] in body, section
    assert "Not available" not in parsed.text["summary"] + parsed.text["sequences"]


def test_top_and_bottom_rows_are_the_extreme_score_sums(attributions, full_run):
    ok = attributions.filter(pc.equal(attributions.column("status"), "ok"))
    sums = row_score_sums(ok.column("residue_attr"))
    order = np.argsort(-sums, kind="stable")
    ids = ok.column("id").to_pylist()
    for batch_rows in (7, 4096):  # streamed in small batches or one: same answer
        scan = scan_attributions(str(full_run), top_n=5, batch_rows=batch_rows)
        assert [r.score for r in scan.top] == pytest.approx(sums[order[:5]].tolist(), rel=1e-6)
        assert [r.id for r in scan.bottom] == [ids[j] for j in order[::-1][:5]]
        fetched = fetch_rows(str(full_run), scan.top + scan.bottom)
        assert [r["id"] for r in fetched] == [r.id for r in scan.top + scan.bottom]
        for row in fetched:
            assert sum(row["residue_attr"]) == pytest.approx(row["score_sum"], rel=1e-5, abs=1e-9)
        assert scan.rows == attributions.num_rows and scan.status["empty_sequence"] == 1
    assert sums[order[0]] > sums[order[-1]]


def test_long_sequences_are_cut_with_a_note(full_run):
    text = render_report(str(full_run), ReportConfig(top_n=3, max_residues=30))
    assert len(re.findall(r"cut: 30 of \d+ residues shown", text)) == 6
    seqs = re.findall(r'<div class="seq".*?</div>', text)
    assert len(seqs) == 6 and all(s.count("<span style") == 30 for s in seqs)
    with pytest.raises(ValueError, match="report.top_n"):
        render_report(str(full_run), ReportConfig(top_n=0))


def test_meme_reader_and_information_content():
    motifs = read_meme_text(_meme())
    assert [m["name"] for m in motifs] == ["m1", "m2"] and motifs[0]["consensus"] == DNA_MOTIF
    assert motifs[0]["pwm"].shape == (len(DNA_MOTIF), 4)
    assert information_content(np.full((2, 4), 0.25)) == pytest.approx([0.0, 0.0])
    assert information_content(np.eye(4)[:2]) == pytest.approx([2.0, 2.0])


@pytest.mark.s3
def test_report_on_s3(full_run):
    from raysattr.io.fs import filesystem

    from .servers import MotoServer, apply_env, restore_env

    server = MotoServer()
    previous = apply_env(server.env)
    try:
        fs, _ = filesystem("s3://reports/run")
        fs.mkdir("reports")
        fs.put(str(full_run), "reports/run", recursive=True)
        path = build_report("s3://reports/run", ReportConfig(top_n=4))
        assert path == "s3://reports/run/report.html"
        text = fs.cat_file("reports/run/report.html").decode()
        assert list(_parse(text).text) == list(SECTION_IDS) and "Not available" not in text
    finally:
        restore_env(previous)
        server.stop()


# --- a real browser ----------------------------------------------------------------------------
def _browser_or_skip():
    required = bool(os.environ.get("RAYSATTR_REQUIRE_BROWSER"))
    if not CHROMIUM.exists() and not required:
        pytest.skip(
            "no /usr/bin/chromium (apt-get install -y chromium); RAYSATTR_REQUIRE_BROWSER unset"
        )
    assert CHROMIUM.exists(), "RAYSATTR_REQUIRE_BROWSER is set but /usr/bin/chromium is missing"
    from playwright.sync_api import sync_playwright

    return sync_playwright


@pytest.mark.slow
def test_report_renders_in_headless_chromium(full_run, tmp_path):
    sync_playwright = _browser_or_skip()
    report = Path(build_report(str(full_run), ReportConfig(top_n=8)))
    errors, failed, requests = [], [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri(), wait_until="load")
        boxes = {s: page.locator(f"section#{s}").bounding_box() for s in SECTION_IDS}
        visible = {s: page.locator(f"section#{s}").is_visible() for s in SECTION_IDS}
        letters = page.locator("svg.logo text.letter")
        n_letters = letters.count()
        tallest = letters.evaluate_all(TALLEST_JS)
        n_spans = page.locator("#top-sequences div.seq span[style]").count()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        context.close()
    assert errors == [] and failed == []
    assert requests == [report.as_uri()]
    assert all(visible.values()), visible
    assert all(b and b["width"] > 0 and b["height"] > 0 for b in boxes.values()), boxes
    assert n_letters >= 10 and tallest > 20 and n_spans > 8 * 40
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    print(f"screenshot: {shot} (copied to {ARTIFACTS / 'report.png'})")
