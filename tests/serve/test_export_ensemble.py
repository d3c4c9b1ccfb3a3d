"""`fitwell export` of an ensemble run: members, calibrators, fold bags and the combiner in one ONNX
graph that predicts what `fitwell predict` does -- unseen categories and missing values included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from fitwell.cli import run_cli
from fitwell.errors import UserError
from fitwell.serve.bundle import load_run
from fitwell.serve.export import check_export, export_onnx
from tests.conftest import make_mixed_frame
from tests.serve.test_export import messy

GBM = {"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 30}}
HGB = {"name": "hgb", "kind": "hist_gradient_boosting", "params": {"max_iter": 30}}
XGB = {"name": "xgb", "kind": "xgboost", "params": {"n_estimators": 20}}


def ensemble(tmp_path, frame: pd.DataFrame, target: str, members: list[dict], *overrides: str):
    tmp_path.mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = {"data": {"source": str(tmp_path / "train.csv"), "target": target},
              "train": {"epochs": 3, "progress": False}, "preprocess": {"onehot_max_categories": 5},
              "track": {"runs_dir": str(tmp_path / "runs"), "name": "ens", "report": False},
              "ensemble": {"folds": 3, "members": members}}
    (tmp_path / "ens.yaml").write_text(yaml.safe_dump(config))
    assert run_cli(["ensemble", str(tmp_path / "ens.yaml"), *overrides]) == 0
    return tmp_path / "runs" / "ens"


def labelled(task: str) -> pd.DataFrame:
    frame = make_mixed_frame(0, 400)
    if task == "multiclass":
        frame["label"] = pd.cut(frame["x1"].fillna(0) - frame["x2"], [-np.inf, -1, 1, np.inf],
                                labels=["low", "mid", "high"]).astype(str)
    elif task == "regression":
        frame["label"] = 3 * frame["x1"].fillna(0) - frame["x2"] + 100
    return frame


@pytest.mark.slow
@pytest.mark.parametrize("task, members, overrides, combiner", [
    # LightGBM (onnxmltools), HistGradientBoosting with categorical splits, an MLP; calibrated members
    ("binary", [GBM, {**HGB, "calibration": "isotonic"}, {"name": "mlp", "calibration": "sigmoid"}],
     ["ensemble.method=stacking", "ensemble.time_limit=600"], "LogisticRegression"),  # HGB time-boxed
    # XGBoost, k-fold bags as the final models, log-odds stacked into a LightGBM meta-learner
    ("multiclass", [GBM, XGB, HGB],
     ["ensemble.method=stacking", "ensemble.final=bag", "ensemble.stack_on=logit",
      "ensemble.meta_learner=lightgbm"], "LGBMClassifier"),
    ("regression", [GBM, HGB, {"name": "tabm", "overrides": {"model.name": "tabm", "model.ensemble_size": 4,
                                                             "model.width": 32}}],
     ["ensemble.method=voting"], None),
])
def test_an_exported_ensemble_predicts_what_fitwell_predict_does(tmp_path, capsys, task, members, overrides,
                                                                 combiner):
    run = ensemble(tmp_path, labelled(task), "label", members, *overrides)
    description = yaml.safe_load((run / "ensemble.json").read_text())
    if "ensemble.time_limit=600" in overrides:  # the member stops at a deadline: a TimeBoxed model
        assert type(load_run(run).ensemble.members[1].estimator).__name__ == "TimeBoxed"
    if combiner:
        assert description["combiner"]["meta_learner"] == combiner
    new = messy(labelled(task), "label")  # unseen categories, missing values, infinities, stray case
    new.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    assert run_cli(["export", str(run), "--check", str(tmp_path / "new.csv")]) == 0
    assert "labels equal 100.0%" in capsys.readouterr().out or task == "regression"
    result = check_export(run, run / "model.onnx", tmp_path / "new.csv")
    assert result["max_difference"] <= 1e-5, result
    if task != "regression":
        assert result["labels_equal"] == 1.0


def test_catboost_on_numbers_exports_and_a_member_of_weight_0_is_left_out(tmp_path):
    frame = load_breast_cancer(as_frame=True).frame.sample(300, random_state=0)
    lr = {"name": "lr", "kind": "sklearn", "estimator": "sklearn.linear_model:LogisticRegression",
          "params": {"max_iter": 2000}}
    members = [GBM, {"name": "catboost", "kind": "catboost", "params": {"iterations": 30}}, lr]
    # a scikit-learn member the graph cannot hold is named -- unless its voting weight is 0
    run = ensemble(tmp_path / "a", frame, "target", members, "ensemble.method=voting")
    with pytest.raises(UserError, match=r"member 'lr': LogisticRegression cannot be exported.*LightGBM"):
        export_onnx(run)
    run = ensemble(tmp_path / "b", frame, "target", members, "ensemble.method=voting",
                   "ensemble.weights={lr: 0}")
    result = check_export(run, export_onnx(run), frame.drop(columns=["target"]))  # CatBoost's own ONNX export
    assert result["max_difference"] <= 1e-5 and result["labels_equal"] == 1.0


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_catboost_with_categorical_columns_exports(tmp_path, task):
    """CatBoost's own ONNX export takes numbers only; its CTR splits (category statistics, alone,
    combined, and combined with binarized numbers) and one-hot splits are rebuilt, so the graph
    predicts what fitwell does -- unseen categories and missing values included."""
    import json

    from fitwell.serve.onnx_catboost import dump

    frame = labelled(task)
    frame["plan"] = np.random.default_rng(1).choice(["basic", "premium"], size=len(frame))  # one-hot
    premium = frame["plan"] == "premium"
    if task == "regression":
        frame.loc[premium, "label"] += 2.0
    else:
        frame.loc[premium & (frame["x2"] < 0.3), "label"] = 1 if task == "binary" else "high"
    cb = {"name": "cb", "kind": "catboost", "params": {"iterations": 300}}
    run = ensemble(tmp_path, frame, "label", [cb], "ensemble.method=voting")
    model = load_run(run).ensemble.members[0].estimator.estimator_
    text = json.dumps(dump(model))
    assert '"OnlineCtr"' in text and '"OneHotFeature"' in text  # 25 cities, 3 colours; 2 plans
    assert '"float_feature"' in text  # a CTR of categories and a binarized number
    new = messy(frame, "label")
    new.to_csv(tmp_path / "new.csv", index=False)
    result = check_export(run, export_onnx(run), tmp_path / "new.csv")
    assert result["max_difference"] <= 1e-9, result
    if task != "regression":
        assert result["labels_equal"] == 1.0


def test_members_that_cannot_export_are_named(tmp_path):
    depthwise = {"name": "cb", "kind": "catboost", "params": {"iterations": 20, "grow_policy": "Depthwise"}}
    members = [GBM, depthwise]
    run = ensemble(tmp_path, labelled("binary"), "label", members, "ensemble.method=stacking")
    with pytest.raises(UserError, match=r"member 'cb' \(catboost\).*not symmetric.*--preset fast"):
        export_onnx(run)
    assert not (run / "model.onnx").exists()  # nothing half-written


def test_a_class_no_training_row_holds_keeps_its_column_through_stacking_and_export(tmp_path):
    """A class of one row that the split put in test: no member nor the meta-learner saw it. The
    run still trains (its split stratifies the other classes), predicts a column for every class,
    and its ONNX graph predicts what `fitwell predict` does."""
    frame = labelled("multiclass")
    frame.loc[2, "label"] = "rare"  # row 2 lands in this seed's test rows
    run = ensemble(tmp_path, frame, "label", [GBM, HGB], "ensemble.method=stacking")
    assert len(load_run(run).ensemble.combiner.meta_learner_.classes_) == 3  # it never saw "rare"
    proba = load_run(run).predict_proba(frame.drop(columns=["label"]))
    assert proba.shape == (len(frame), 4) and np.allclose(proba.sum(axis=1), 1)
    result = check_export(run, export_onnx(run), messy(frame, "label"))
    assert result["max_difference"] <= 1e-5 and result["labels_equal"] == 1.0


def test_a_table_with_a_date_column_learns_from_it_and_exports_it_as_days(tmp_path):
    """The label turns on a date (signed after 2021-06-30): once dropped as an ID, the column now
    carries the signal. `fitwell predict` reads the dates as text, the ONNX graph as days since
    1970 (what `onnx_feeds` gives it), and the two agree -- a date that is not one included."""
    rng = np.random.default_rng(0)
    frame = make_mixed_frame(0, 400)
    signed = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, 400), unit="D")
    frame["signed"] = signed.strftime("%Y-%m-%d")
    frame["label"] = (signed > pd.Timestamp("2021-06-30")).astype(int)
    run = ensemble(tmp_path, frame, "label", [GBM, HGB], "ensemble.method=stacking")
    assert yaml.safe_load((run / "metrics.json").read_text())["test"]["roc_auc"] > 0.97
    assert load_run(run).preprocessor.plan.dates == ["signed"]
    new = messy(frame, "label")
    new.loc[new.index[30], "signed"] = "someday"
    result = check_export(run, export_onnx(run), new)
    assert result["max_difference"] <= 1e-5 and result["labels_equal"] == 1.0
