"""Config: defaults + YAML + dotlist, and clear errors for unknown keys and bad values."""

from pathlib import Path

import pytest

from raysattr.attribution.registry import check_methods
from raysattr.config import ConfigError, RunConfig, load
from raysattr.io.readers import INPUT_FORMATS
from raysattr.io.sources import check_format

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    cfg = load(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.tokenize.scheme in ("kmer", "residue", "text")


def test_seed_workloads_are_all_present():
    names = {p.stem for p in CONFIGS}
    assert {
        "demo",
        "dnabert6_promoters",
        "protbert_knotted",
        "bert_text",
        "longformer_papers",
        "bert_imdb_deeplift",
    } <= names


def test_dotlist_overrides_win_over_yaml():
    cfg = load(Path("configs/demo.yaml"), ["attribution.n_steps=7", "compute.max_actors=3"])
    assert cfg.attribution.n_steps == 7
    assert cfg.compute.max_actors == 3
    assert cfg.tokenize.k == 6  # from the YAML


def test_protein_config_keeps_the_real_csv_header():
    cfg = load(Path("configs/protbert_knotted.yaml"))
    assert cfg.data.label_column == "knotted?"
    assert cfg.data.csv_delimiter == ";"
    assert cfg.model.tokenizer == "yarongef/DistilProtBert"


def test_unknown_key_names_the_key_and_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        load(None, ["attribution.n_stepz=3"])
    msg = str(err.value)
    assert "attribution.n_stepz" in msg
    assert "attribution.n_steps" in msg and "attribution.method" in msg


def test_unknown_top_level_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("modle:\n  path: x\n")
    with pytest.raises(ConfigError, match="modle"):
        load(path)


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="attribution.n_steps"):
        load(None, ["attribution.n_steps=many"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("attribution.target=best", "attribution.target"),
        ("tokenize.scheme=bpe", "tokenize.scheme"),
        ("attribution.n_steps=0", "attribution.n_steps"),
        ("compute.max_actors=0", "compute.max_actors"),
        ("tokenize.long_policy=split", "tokenize.long_policy"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(None, [override])


@pytest.mark.parametrize("key", ["method", "compare_method"])
def test_unknown_method_lists_the_registered_ones(key):
    cfg = load(None, [f"attribution.{key}=gradcam"])  # config.py knows no methods: layers
    with pytest.raises(ConfigError) as err:
        check_methods(cfg.attribution)
    assert f"attribution.{key}" in str(err.value)
    assert "lig" in str(err.value) and "deeplift" in str(err.value)


def test_unknown_data_format_lists_the_formats_of_the_reader_table():
    cfg = load(None, ["data.format=xml"])  # config.py knows no formats: io's reader table does
    with pytest.raises(ConfigError) as err:
        check_format(cfg.data)
    message = str(err.value)
    assert "data.format='xml'" in message
    assert all(name in message for name in ("auto", *INPUT_FORMATS))
    check_format(load(None, ["data.format=fasta"]).data)  # a format of the table passes


def test_a_method_module_that_does_not_import_is_named():
    cfg = load(None, ["attribution.method_modules=[no_such_lab.methods]"])
    with pytest.raises(ConfigError, match="no_such_lab.methods.*attribution.method_modules"):
        check_methods(cfg.attribution)


def test_label_target_needs_a_label_column():
    with pytest.raises(ConfigError, match="label_column"):
        load(None, ["attribution.target=label", "data.label_column=null"])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load("configs/nope.yaml")


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load(None, ["attribution.n_steps"])
