"""The bias audit: per-group test metrics with fairlearn, gaps checked by hand, small groups
flagged."""

import json

import numpy as np
import pandas as pd
import pytest

from fitwell.errors import ConfigError
from fitwell.evaluate.fairness import bias_audit
from fitwell.pipeline import train


def biased_frame(n=1200, seed=0) -> pd.DataFrame:
    """Group 'a' gets positives far more often than 'b'; 'c' is a handful of rows."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.48, 0.02])
    x = rng.normal(size=n) + np.where(group == "a", 1.0, -1.0)
    y = (x + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=n), "group": group, "age": rng.integers(18, 80, n),
                         "label": y})


def test_bias_table_matches_a_hand_count(tmp_path):
    frame = biased_frame()
    run = train({"data": {"target": "label", "sensitive": ["group", "age"], "drop": ["group", "age"]},
                 "train": {"epochs": 5, "progress": False}, "audit": {"min_group_size": 20},
                 "track": {"runs_dir": str(tmp_path)}}, data=frame)
    fairness = json.loads((run.path / "fairness.json").read_text())
    predictions = pd.read_csv(run.path / "test_predictions.csv")
    groups = frame.loc[predictions["row"], "group"].to_numpy()
    table = fairness["columns"]["group"]
    by_group = {row["group"]: row for row in table["groups"]}
    rates = {}
    for g in ("a", "b"):
        mask = groups == g
        rates[g] = float((predictions["prediction"][mask] == 1).mean())
        assert by_group[g]["selection_rate"] == pytest.approx(rates[g])
        assert by_group[g]["count"] == mask.sum() and by_group[g]["judged"]
        positives = mask & (predictions["target"] == 1).to_numpy()
        tpr = float((predictions["prediction"][positives] == 1).mean())
        assert by_group[g]["true_positive_rate"] == pytest.approx(tpr)
    gap = table["differences"]["demographic_parity_difference"]
    assert gap == pytest.approx(abs(rates["a"] - rates["b"]))
    assert table["differences"]["demographic_parity_difference"] > 0.3
    assert table["small_groups"] == ["c"] and not by_group["c"]["judged"]
    checks = {(f["check"], f["column"]) for f in fairness["findings"]}
    assert ("small_group", "group") in checks and ("group_gap", "group") in checks
    age = fairness["columns"]["age"]
    assert age["note"] == "cut into quartiles" and len(age["groups"]) == 4


def test_multiclass_and_regression_tables():
    preds = pd.DataFrame({"target": ["x", "y", "z", "x"] * 25, "prediction": ["x", "y", "x", "x"] * 25})
    table, _ = bias_audit(preds, pd.DataFrame({"g": ["p", "q"] * 50}), "multiclass", ["x", "y", "z"], 10)
    assert set(table["columns"]["g"]["differences"]) == {"accuracy_difference"}
    shift = np.r_[[0.0] * 30, [2.0] * 30]
    values = pd.DataFrame({"target": np.arange(60.0), "prediction": np.arange(60.0) + shift})
    table, _ = bias_audit(values, pd.DataFrame({"g": ["p"] * 30 + ["q"] * 30}), "regression", [], 10)
    assert table["columns"]["g"]["differences"]["mae_difference"] == pytest.approx(2.0)


def test_unknown_sensitive_column_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.sensitive: column 'gruop'.*Did you mean 'group'"):
        train({"data": {"target": "label", "sensitive": ["gruop"]}, "train": {"epochs": 1, "progress": False},
               "track": {"runs_dir": str(tmp_path)}}, data=biased_frame())
