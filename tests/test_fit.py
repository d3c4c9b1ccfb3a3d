"""Training without a config: ``fitwell train TABLE --target COL`` and ``fitwell.fit``; presets
shipped as YAML; the ensemble's time limit."""

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

import fitwell
from fitwell.cli import run_cli
from fitwell.config import load_config
from fitwell.config.load import preset_values
from fitwell.errors import ConfigError


def table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows),
                          "city": rng.choice(["a", "b", "c", None], size=rows)})
    signal = frame["x1"] - frame["x2"] + (frame["city"] == "a")
    frame["churn"] = (signal > 0.3).map({True: "yes", False: "no"})
    return frame


def test_train_a_table_without_a_config_through_the_cli(tmp_path, capsys):
    data = tmp_path / "customers.csv"
    table().to_csv(data, index=False)
    code = run_cli(["train", str(data), "--target", "churn", "--preset", "fast",
                    f"track.runs_dir={tmp_path / 'runs'}"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("customers-")  # named after the table
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["preset"] == "fast" and saved["data"]["target"] == "churn"
    assert [m["name"] for m in saved["ensemble"]["members"]] == ["lightgbm", "hgb"]
    assert "ensemble:" in out and json.loads((run / "metrics.json").read_text())["test"]["roc_auc"] > 0.85
    # the saved config reproduces the run from a YAML
    again = load_config(run / "config.yaml")
    assert again.ensemble.members == load_config({"preset": "fast"}).ensemble.members
    predictions = tmp_path / "p.csv"
    assert run_cli(["predict", str(run), "--data", str(data), "--out", str(predictions)]) == 0
    assert set(pd.read_csv(predictions)["prediction"]) <= {"yes", "no"}


@pytest.mark.parametrize("preset", ["fast", None])
def test_no_test_split_when_the_user_brings_a_test_file(tmp_path, capsys, preset):
    """split.test: 0 puts every row into training and validation; nothing is scored as "test"
    until the user's own file is, once, with fitwell evaluate."""
    data, holdout = tmp_path / "train.csv", tmp_path / "test.csv"
    table(400, seed=0).to_csv(data, index=False)
    table(200, seed=1).to_csv(holdout, index=False)
    if preset:  # an ensemble
        command = [str(data), "--target", "churn", "--preset", preset]
    else:  # one network, from a YAML config
        config = tmp_path / "one.yaml"
        config.write_text(f"data: {{source: {data}, target: churn}}\ntrain: {{epochs: 20}}\n")
        command = [str(config)]
    code = run_cli(["train", *command, "split.test=0", "split.train=0.85",
                    f"track.runs_dir={tmp_path / 'runs'}"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["split"]["test"] == 0 and "test" not in summary
    assert not (run / "test_predictions.csv").exists() and "no test split" in out
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    scores = tmp_path / "scores.json"
    assert run_cli(["evaluate", str(run), "--data", str(holdout), "--out", str(scores)]) == 0
    assert json.loads(scores.read_text())["roc_auc"] > 0.8


def test_a_table_needs_a_target(tmp_path, capsys):
    data = tmp_path / "t.csv"
    table().to_csv(data, index=False)
    assert run_cli(["train", str(data)]) == 2
    assert "--target" in capsys.readouterr().err


def test_fit_in_python_and_presets_under_the_users_keys(tmp_path):
    run = fitwell.fit(table(), "churn", preset="fast", overrides={"track.runs_dir": str(tmp_path),
                                                                  "ensemble.folds": 2})
    assert run.summary["method_setting"] == "auto" and run.config.ensemble.folds == 2
    assert run.metrics["roc_auc"] > 0.85
    single = fitwell.fit(table(), "churn", preset=None, overrides={"track.runs_dir": str(tmp_path),
                                                                   "train.epochs": 3})
    assert "members" not in single.summary and single.metrics["accuracy"] > 0.6


@pytest.mark.parametrize("name", ["fast", "good", "best"])
def test_every_preset_is_a_valid_config(name):
    config = load_config({"preset": name})
    assert config.ensemble is not None and config.ensemble.method == "auto"
    assert preset_values(name)["ensemble"]["members"][0]["kind"] == "lightgbm"  # cheap strong ones first


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"preset: unknown preset 'godo'\. Did you mean 'good'\?"):
        load_config({"preset": "godo"})


@pytest.mark.serial
@pytest.mark.slow
def test_the_time_limit_holds_with_an_ensemble(tmp_path):
    """A 6,000-row table whose good-preset ensemble takes far longer than 20 s untimed: with
    --time-limit 20 the whole run, data to report, ends within 22 s, members skipped as needed."""
    data = tmp_path / "mid.csv"
    frame = table(6000, seed=1)
    for i in range(12):
        frame[f"z{i}"] = np.random.default_rng(i).normal(size=len(frame))
    frame.to_csv(data, index=False)
    started = time.monotonic()  # the command's own start-up and imports count too
    done = subprocess.run([sys.executable, "-m", "fitwell", "train", str(data), "--target", "churn",
                           "--time-limit", "20", "track.runs_dir=" + str(tmp_path),
                           "explain.permutation=false"],
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert elapsed < 22, elapsed
    summary = json.loads(next(tmp_path.glob("*/metrics.json")).read_text())
    assert summary["members"] and summary["test"]["roc_auc"] > 0.8


def test_refit_on_train_val_trains_on_every_row_but_the_test_rows(tmp_path):
    frame = table(300)
    config = {"data": {"target": "churn"}, "track": {"runs_dir": str(tmp_path)},
              "explain": {"permutation": False},
              "ensemble": {"folds": 3, "refit_on": "train_val",
                           "members": [{"name": "lightgbm", "kind": "lightgbm"}]}}
    run = fitwell.train(config, data=frame)
    split = run.summary["split"]
    assert split["val"] == 0 and split["train"] + split["test"] == len(frame)
    oof = pd.read_csv(run.path / "oof.csv")
    test = pd.read_csv(run.path / "test_predictions.csv")
    assert len(oof) == split["train"] and not set(oof["row"]) & set(test["row"])  # test rows unseen
    assert "validation" not in run.summary
    with pytest.raises(ConfigError, match="ensemble.refit_on"):
        from fitwell.tune import tune

        tune({**config, "tune": {"space": {"ensemble.method": {"type": "categorical",
                                                               "choices": ["best", "voting"]}}}},
             data=frame)
