"""End to end through the ``fitwell`` command: examples, predict, evaluate, errors, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitwell.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def train_preset(tmp_path: Path, frame, target: str, preset: str = "fast") -> tuple[Path, dict]:
    """``fitwell train TABLE.csv --target TARGET --preset PRESET`` as a user runs it on ``frame``:
    the run directory and its test metrics."""
    frame.to_csv(tmp_path / "table.csv", index=False)
    assert run_cli(["train", str(tmp_path / "table.csv"), "--target", target, "--preset", preset, "-q",
                    f"track.runs_dir={tmp_path / 'runs'}", "track.report=false"]) == 0
    run = only_run(tmp_path / "runs")
    return run, json.loads((run / "metrics.json").read_text())["test"]


@pytest.mark.parametrize("example, metric, floor", [
    ("breast_cancer", "roc_auc", 0.98),
    ("wine", "accuracy", 0.95),
    ("diabetes", "r2", 0.30),  # see docs/benchmarks.md: 0.43 mean over seeds, split-dependent
])
def test_examples_train_as_shipped(tmp_path, capsys, example, metric, floor):
    code = run_cli(["train", str(ROOT / "examples" / f"{example}.yaml"),
                    f"track.runs_dir={tmp_path}", "train.progress=false"])
    out = capsys.readouterr().out
    assert code == 0, out
    run = only_run(tmp_path)
    assert f"run directory: {run}" in out and metric in out
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert metrics[metric] >= floor
    for name in ("config.yaml", "model.safetensors", "model.json", "history.jsonl", "env.json",
                 "preprocess/preprocess.skops", "checkpoints/last.ckpt", "data.json"):
        assert (run / name).exists(), name
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"]


@pytest.fixture
def trained(tmp_path, mixed_frame, write_config):
    path = tmp_path / "train.csv"
    mixed_frame.to_csv(path, index=False)
    config = write_config({"data": {"source": str(path), "target": "label"},
                           "train": {"epochs": 10, "progress": False}})
    assert run_cli(["train", str(config)]) == 0
    return only_run(tmp_path / "runs")


def test_predict_handles_unseen_categories(trained, tmp_path, mixed_frame, capsys):
    new = mixed_frame.drop(columns=["label"]).head(20).copy()
    new.loc[new.index[:5], "city"] = "a city never seen"
    new.loc[new.index[5:8], "color"] = "ultraviolet"
    data, out = tmp_path / "new.csv", tmp_path / "pred" / "predictions.csv"
    new.to_csv(data, index=False)
    assert run_cli(["predict", str(trained), "--data", str(data), "--out", str(out)]) == 0
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["prediction", "proba_0", "proba_1"] and len(predictions) == 20
    assert set(predictions["prediction"]) <= {0, 1}
    assert np.allclose(predictions[["proba_0", "proba_1"]].sum(axis=1), 1.0)
    # the file may follow the run directory, as `fitwell train` takes its table
    again = tmp_path / "again.csv"
    assert run_cli(["predict", str(trained), str(data), "--out", str(again)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again), predictions)
    assert run_cli(["predict", str(trained), str(data), "--data", str(out)]) == 2
    assert "two files of rows" in capsys.readouterr().err


def test_predict_names_a_missing_column(trained, tmp_path, mixed_frame, capsys):
    data = tmp_path / "new.csv"
    mixed_frame.drop(columns=["label", "x2"]).to_csv(data, index=False)
    assert run_cli(["predict", str(trained), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "input column 'x2' missing" in err and "Traceback" not in err


def test_evaluate_on_another_labelled_file(trained, tmp_path, mixed_frame, capsys):
    data = tmp_path / "labelled.csv"
    mixed_frame.tail(100).to_csv(data, index=False)
    out = tmp_path / "m.json"
    assert run_cli(["evaluate", str(trained), "--data", str(data), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    expected = {"accuracy", "balanced_accuracy", "f1", "log_loss", "roc_auc", "pr_auc", "brier", "ece"}
    assert expected <= set(metrics)
    assert metrics["accuracy"] > 0.8 and "roc_auc" in capsys.readouterr().out


def test_python_api(tmp_path):
    import fitwell

    run = fitwell.train(ROOT / "examples" / "wine.yaml",
                        overrides={"train.lr": 1e-3, "track.runs_dir": str(tmp_path),
                                   "train.epochs": 30, "train.progress": False})
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.drop(columns=["target"])
    predictions = run.predict(frame)
    assert run.metrics["accuracy"] > 0.8 and set(predictions["prediction"]) <= {0, 1, 2}
    again = fitwell.load_run(run.path)
    assert again.predict(frame).equals(predictions)


def _errors_case(tmp_path, case):
    csv = tmp_path / "data.csv"
    frame = pd.DataFrame({"a": np.random.default_rng(0).normal(size=30), "b": ["x", "y", "z"] * 10,
                          "y": [0, 1] * 15})
    config = {"data": {"source": str(csv), "target": "y"}, "track": {"runs_dir": str(tmp_path)}}
    if case == "bad config":
        config["train"] = {"lrr": 0.1}
    elif case == "missing file":
        config["data"]["source"] = str(tmp_path / "nope.csv")
    elif case == "empty file":
        csv.write_text("")
    elif case == "missing target":
        config["data"]["target"] = "label"
    elif case == "one class":
        frame["y"] = 1
    elif case == "strings declared numeric":
        config["data"]["columns"] = {"b": "numeric"}
    if not csv.exists():
        frame.to_csv(csv, index=False)
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("case, message", [
    ("bad config", r"run\.yaml: train\.lrr: unknown key\. Did you mean 'train\.lr'\?"),
    ("missing file", r"data file .*nope\.csv does not exist"),
    ("empty file", r"data\.csv is empty"),
    ("missing target", r"target column 'label' \(data\.target\) is not in the data.*Columns: a, b, y"),
    ("one class", r"target 'y' has one class \(1\) in all 30 rows"),
    ("strings declared numeric", r"column 'b' is declared numeric .* first at row 0: 'x'"),
])
def test_user_errors_exit_2_with_one_message(tmp_path, capsys, case, message):
    import re

    path = _errors_case(tmp_path, case)
    assert run_cli(["train", str(path), "train.progress=false"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, " ".join(err.split())), err
    assert "Traceback" not in err and err.strip().startswith("error:")


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = _errors_case(tmp_path, "bad config")
    assert run_cli(["--debug", "train", str(path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors():
    assert run_cli(["train"]) == 2
    assert run_cli(["no-such-command"]) == 2


WARM_PROBE = """
import gc, sys
from fitwell.cli import warm_start
warm_start(sys.argv[1:])
print(gc.isenabled(), gc.get_freeze_count() > 0, "torch" in sys.modules, "skops.io" in sys.modules)
"""


@pytest.mark.parametrize("argv, expected", [
    (["--debug", "train", "config.yaml"], "True True True True"),  # what training needs, collector back on
    (["runs"], "True False False False"),  # listing runs imports no torch: it stays instant
    (["train", "--help"], "True False False False"),
])
def test_the_console_command_imports_what_it_needs_up_front(argv, expected):
    """`fitwell train` imports torch, torch._dynamo, skops and matplotlib with the garbage collector
    paused and frozen (0.8 s less on a 500-row run); the collector is on again afterwards."""
    done = subprocess.run([sys.executable, "-c", WARM_PROBE, *argv], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == expected.split()


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates(path):
    from fitwell.config.load import load_config

    load_config(path)
