import pytest

from fitwell.config import load_config
from fitwell.config.load import parse_value
from fitwell.errors import ConfigError


@pytest.mark.parametrize("text, expected", [
    ("3e-3", 0.003),
    ("50", 50),
    ("true", True),
    ("null", None),
    ("[64, 32]", [64, 32]),
    ("adamw", "adamw"),
    ("{a: 1}", {"a": 1}),
])
def test_override_values_are_typed(text, expected):
    assert parse_value(text) == expected


def test_yaml_file_plus_dotted_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  source: sklearn:iris\ntrain:\n  lr: 0.1\n")
    config = load_config(path, ["train.lr=3e-3", "train.epochs=50", "model.hidden_sizes=[8,4]",
                                "train.early_stopping.patience=3"])
    assert config.train.lr == 0.003 and config.train.epochs == 50
    assert config.model.hidden_sizes == [8, 4]
    assert config.train.early_stopping.patience == 3
    assert config.data.source == "sklearn:iris"


def test_bad_lr_names_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: -0.1\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: train\.lr: .*greater than 0.*-0\.1"):
        load_config(path)


@pytest.mark.parametrize("raw, message", [
    ({"train": {"lrr": 0.1}}, r"train\.lrr: unknown key\. Did you mean 'train\.lr'\?"),
    ({"trian": {}}, r"trian: unknown key\. Did you mean 'train'\?"),
    ({"train": {"early_stopping": {"patiense": 2}}},
     r"Did you mean 'train\.early_stopping\.patience'\?"),
    ({"model": {"activation": "relux"}}, r"model\.activation: .*'relu'"),
    ({"split": {"train": 0.5}}, r"split: train \+ val \+ test must sum to 1"),
    ({"data": {"task": "binary"}, "train": {"early_stopping": {"monitor": "val_r2"}}},
     r"train\.early_stopping\.monitor: 'val_r2' is never logged for a binary task"),
])
def test_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match=r"train\.lr is a value, not a section"):
        load_config({"train": {"lr": 0.1}}, ["train.lr.x=1"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config({}, ["train.lr"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_a_spreadsheet_or_a_table_of_another_suffix_given_as_the_config_says_what_fitwell_reads(tmp_path):
    """`fitwell train sales.xlsx --target y` takes a file that is not a table suffix for a config:
    the error says which files fitwell reads, whether the file is binary, text YAML cannot parse,
    or text that parses as a plain string."""
    sheet = tmp_path / "sales.xlsx"
    sheet.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\xff\xfe\x80 not utf-8")
    text = tmp_path / "sales.txt"
    text.write_text("a,b,y\n1,2,0\n")
    for path, said in ((sheet, "not UTF-8 text"), (text, "top level must be a mapping")):
        with pytest.raises(ConfigError, match=rf"{said}.*not a \.yaml file.*\.csv.*save a spreadsheet as"):
            load_config(path)
