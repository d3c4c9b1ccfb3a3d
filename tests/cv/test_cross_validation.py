import json

import numpy as np
import pandas as pd
import pytest

from fitwell.cli import run_cli
from fitwell.config import SplitConfig
from fitwell.cv.cross_validation import cross_validate
from fitwell.data.split import cv_split


def frame(n=120):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"g": rng.integers(0, 12, n), "t": rng.permutation(n)})


@pytest.mark.parametrize("method", ["stratified", "random", "group", "time"])
def test_held_out_folds_never_share_rows(method):
    data = frame()
    y = np.array([0, 1] * 60)
    config = SplitConfig(method=method, group_column="g", time_column="t")
    splits = [cv_split(data, y, config, "binary", seed=0, folds=4, fold=i) for i in range(4)]
    held = [set(s.test) for s in splits]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not held[i] & held[j]
        assert not held[i] & set(splits[i].train) and not held[i] & set(splits[i].val)
        assert not set(splits[i].train) & set(splits[i].val)
    if method != "time":  # forward chaining never holds out the first block
        assert set().union(*held) == set(range(120))
    if method == "group":
        g = data["g"].to_numpy()
        for s in splits:
            assert not set(g[s.test]) & set(g[np.concatenate([s.train, s.val])])
    if method == "time":
        t = data["t"].to_numpy()
        for s in splits:
            assert t[np.concatenate([s.train, s.val])].max() < t[s.test].min()


def test_repeats_reshuffle():
    data, y = frame(), np.array([0, 1] * 60)
    a = cv_split(data, y, SplitConfig(), "binary", 0, 4, 0, repeat=0)
    b = cv_split(data, y, SplitConfig(), "binary", 0, 4, 0, repeat=1)
    assert not np.array_equal(a.test, b.test)


def test_cross_validate_saves_oof_predictions_and_mean_std(tmp_path, mixed_frame):
    summary = cross_validate({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path), "name": "cv"},
                              "train": {"epochs": 4}}, folds=3, repeats=2, data=mixed_frame)
    folds = pd.read_csv(tmp_path / "cv" / "folds.csv")
    assert len(folds) == 6
    assert summary["mean"]["accuracy"] == pytest.approx(folds["accuracy"].mean())
    assert summary["std"]["accuracy"] == pytest.approx(folds["accuracy"].std(ddof=1))
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv")
    for repeat in (0, 1):
        rows = oof.loc[oof["repeat"] == repeat, "row"]
        assert sorted(rows) == sorted(mixed_frame.index)  # each row predicted once per repeat
    assert {"proba_0", "proba_1", "prediction", "target", "fold"} <= set(oof.columns)
    # preprocessing is fitted inside each fold: imputation values differ between folds
    stats = [json.loads((tmp_path / "cv" / "repeat-0" / f"fold-{i}" / "data.json").read_text())
             ["preprocessing"]["impute"]["x1"] for i in range(3)]
    assert len(set(stats)) == 3


def test_cv_command(tmp_path, capsys):
    assert run_cli(["cv", "examples/wine.yaml", "--folds", "3", f"track.runs_dir={tmp_path}",
                    "track.name=w", "train.epochs=20"]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation" in out and "accuracy" in out
    assert (tmp_path / "w" / "oof.csv").exists()
    assert run_cli(["cv", "examples/wine.yaml", "--folds", "1"]) == 2
