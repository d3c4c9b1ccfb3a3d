import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from fitwell.cli import run_cli
from fitwell.ensemble import EnsembleRun, fit_ensemble
from fitwell.errors import ConfigError
from fitwell.serve import load_run

FAST = {"epochs": 8, "progress": False}


def test_ensemble_cli_is_quiet_with_q_as_train_is(tmp_path, mixed_frame, capsys):
    data = tmp_path / "data.csv"
    mixed_frame.to_csv(data, index=False)
    config = tmp_path / "ens.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": str(data), "target": "label"}, "track": {"runs_dir": str(tmp_path / "runs")},
        "ensemble": {"folds": 2, "members": [{"name": "gbm", "kind": "lightgbm",
                                              "params": {"n_estimators": 10}}]}}))
    assert run_cli(["ensemble", str(config), "-q"]) == 0
    out = capsys.readouterr()
    assert "ensemble: " in out.out and "out-of-fold" not in out.err


def test_ensemble_cli_exports_one_run_that_fitwell_predict_reads(tmp_path, mixed_frame, capsys):
    data = tmp_path / "data.csv"
    mixed_frame.to_csv(data, index=False)
    config = tmp_path / "ens.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": str(data), "target": "label"}, "train": FAST,
        "track": {"runs_dir": str(tmp_path / "runs"), "name": "ens"}, "explain": {"permutation": True},
        "ensemble": {"folds": 3, "members": [
            {"name": "mlp"}, {"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 30}},
            {"name": "bag", "kind": "sklearn", "estimator": "sklearn.linear_model:LogisticRegression",
             "bagging": 3, "calibration": "sigmoid"}]}}))
    assert run_cli(["ensemble", str(config)]) == 0
    out = capsys.readouterr()
    summary = json.loads((tmp_path / "runs" / "ens" / "metrics.json").read_text())
    # ensemble.method is auto: the combiner with the lowest nested out-of-fold loss was chosen
    nested = {m: v["nested_oof_loss"] for m, v in summary["methods"].items()}
    assert summary["method_setting"] == "auto" and summary["method"] == min(nested, key=nested.get)
    assert f"ensemble: {summary['method']} of mlp, gbm, bag" in out.out
    assert "diversity" in out.err and "out-of-fold" in out.err
    run_dir = tmp_path / "runs" / "ens"
    for name in ("ensemble.skops", "ensemble.json", "config.yaml", "metrics.json", "diversity.csv",
                 "oof.csv", "members.csv", "reliability.json", "preprocess/preprocess.json"):
        assert (run_dir / name).exists(), name

    summary = json.loads((run_dir / "metrics.json").read_text())
    assert set(summary["members"]) == {"mlp", "gbm", "bag"}
    assert set(summary["methods"]) == {"stacking", "voting", "greedy", "best"}
    matrix = np.array(summary["diversity"]["matrix"])
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert summary["test"]["roc_auc"] > 0.85
    assert "test_uncalibrated" in summary["members"]["bag"]  # the calibrated member, before calibration
    importance = json.loads((run_dir / "importance.json").read_text())["importances"]
    assert {importance[0]["column"], importance[1]["column"]} == {"x1", "x2"}  # the planted signal

    # out-of-fold predictions cover exactly the training rows, never a test row
    oof = pd.read_csv(run_dir / "oof.csv")
    data_report = json.loads((run_dir / "data.json").read_text())
    assert len(oof) == data_report["split"]["train"] and oof["row"].is_unique
    assert {"mlp_proba_0", "gbm_proba_1", "bag_proba_1"} <= set(oof.columns)

    # the whole ensemble predicts from its directory alone, via the CLI too; unseen category included
    new = mixed_frame.drop(columns=["label"]).head(20).copy()
    new.loc[new.index[0], "color"] = "purple"
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    assert run_cli(["predict", str(run_dir), "--data", str(new_path), "--out", str(tmp_path / "p.csv")]) == 0
    from_cli = pd.read_csv(tmp_path / "p.csv")
    run = load_run(run_dir)
    assert isinstance(run, EnsembleRun)
    direct = run.predict(new)
    np.testing.assert_allclose(from_cli["proba_1"], direct["proba_1"], rtol=1e-6)
    np.testing.assert_allclose(direct[["proba_0", "proba_1"]].sum(axis=1), 1.0)
    assert run.evaluate(mixed_frame)["accuracy"] > 0.8
    assert run_cli(["evaluate", str(run_dir), "--data", str(data)]) == 0


def test_isotonic_and_sigmoid_calibration_lower_the_ece_of_an_over_confident_member(tmp_path):
    # Gaussian naive Bayes with redundant features is over-confident (scikit-learn's calibration guide)
    X, y = make_classification(3000, 20, n_informative=3, n_redundant=10, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)]).assign(target=y)
    nb = {"kind": "sklearn", "estimator": "sklearn.naive_bayes:GaussianNB"}
    run = fit_ensemble({"data": {"target": "target"}, "track": {"runs_dir": str(tmp_path)},
                        "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                        "ensemble": {"method": "best", "members": [
                            {"name": "raw", **nb}, {"name": "isotonic", **nb, "calibration": "isotonic"},
                            {"name": "sigmoid", **nb, "calibration": "sigmoid"}]}}, data=frame)
    members = run.summary["members"]
    raw = members["raw"]["test"]["ece"]
    assert raw > 0.05  # over-confident as planted
    assert members["isotonic"]["test"]["ece"] < raw / 2
    assert members["sigmoid"]["test"]["ece"] < raw / 2
    assert members["isotonic"]["test_uncalibrated"]["ece"] == pytest.approx(raw)
    curves = json.loads((run.path / "reliability.json").read_text())
    assert set(curves["members"]["isotonic"]) == {"calibration", "curve", "uncalibrated"}


def test_regression_ensemble_predicts_in_the_targets_units(tmp_path):
    run = fit_ensemble({"data": {"source": "sklearn:diabetes"}, "train": FAST,
                        "track": {"runs_dir": str(tmp_path)},
                        "ensemble": {"method": "greedy", "folds": 3, "members": [
                            {"name": "mlp"}, {"name": "hgb", "kind": "hist_gradient_boosting",
                                              "params": {"max_iter": 50}},
                            {"name": "ridge", "kind": "sklearn",
                             "estimator": "sklearn.linear_model:Ridge"}]}})
    from fitwell.data.sources import read_table

    frame = read_table("sklearn:diabetes")
    predictions = run.predict(frame)["prediction"]
    assert abs(predictions.mean() - frame["target"].mean()) < 15  # target mean 152: not scaled units
    weights = run.summary["combiner"]["weights"]
    assert sum(weights) == pytest.approx(1.0) and max(weights) < 1.0  # greedy mixed members
    worst = min(member["test"]["r2"] for member in run.summary["members"].values())
    assert run.metrics["r2"] >= worst and run.metrics["r2"] > 0.1  # a hard split: ridge scores 0.19 on it
    assert set(run.metrics) >= {"rmse", "mae", "r2", "mape", "median_ae"}


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no 'ensemble' section"):
        fit_ensemble({"data": {"source": "sklearn:iris"}, "track": {"runs_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"ensemble.use: unknown member 'mpl'"):
        fit_ensemble({"data": {"source": "sklearn:iris"},
                      "ensemble": {"use": ["mpl"], "members": [{"name": "mlp"}]}})
    with pytest.raises(ConfigError, match=r"split.method is time"):
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"t": rng.permutation(100) * 1.5, "x": rng.normal(size=100),
                              "target": np.arange(100) % 2})
        fit_ensemble({"data": {"target": "target"}, "track": {"runs_dir": str(tmp_path)},
                      "split": {"method": "time", "time_column": "t"},
                      "ensemble": {"members": [{"name": "mlp"}]}}, data=frame)


def test_tune_searches_ensemble_settings_and_fits_each_member_once(tmp_path, monkeypatch):
    import fitwell.ensemble.build as build
    from fitwell.tune import tune

    fitted = []
    original = build.fit_member

    def counting(spec, *args, **kwargs):
        fitted.append(spec.name)
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(build, "fit_member", counting)
    summary = tune({"data": {"source": "sklearn:breast_cancer"}, "train": FAST,
                    "track": {"runs_dir": str(tmp_path)},
                    "ensemble": {"members": [{"name": "mlp"}, {"name": "gbm", "kind": "lightgbm",
                                                               "params": {"n_estimators": 20}}]},
                    "tune": {"metric": "val_log_loss", "trials": 4, "sampler": "random", "seed": 0,
                             "study": "ens", "space": {
                                 "ensemble.method": {"type": "categorical",
                                                     "choices": ["stacking", "voting"]},
                                 "ensemble.weights.mlp": {"type": "float", "low": 0.1, "high": 1.0}}}})
    assert fitted.count("mlp") == 2 and fitted.count("gbm") == 2  # once for the trials, once to refit
    assert set(summary["best_params"]) == {"ensemble.method", "ensemble.weights.mlp"}
    best = load_run(summary["best_run"])
    assert isinstance(best, EnsembleRun)
    assert best.summary["method"] == summary["best_params"]["ensemble.method"]
    assert summary["test"] == best.metrics


def test_tune_rejects_a_metric_an_ensemble_does_not_report(tmp_path):
    from fitwell.tune import tune

    with pytest.raises(ConfigError, match=r"'val_rmse' is not reported by an ensemble"):
        tune({"data": {"source": "sklearn:iris", "task": "multiclass"}, "track": {"runs_dir": str(tmp_path)},
              "ensemble": {"members": [{"name": "mlp"}]},
              "tune": {"metric": "val_rmse", "space": {"ensemble.method": {
                  "type": "categorical", "choices": ["voting", "best"]}}}})


@pytest.mark.parametrize("final", ["refit", "bag"])
def test_no_member_sees_the_rows_of_its_out_of_fold_predictions(tmp_path, final):
    """Out-of-fold predictions exist for every training row and member, and each comes from a fit
    that did not see that row: a 1-nearest-neighbour member on a row id memorises random labels
    (right on every row it saw), so its out-of-fold accuracy is chance only if no row leaked."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"rid": np.arange(400, dtype=float), "y": rng.integers(0, 2, 400)})
    run = fit_ensemble({"data": {"target": "y", "columns": {"rid": "numeric"}},
                        "track": {"runs_dir": str(tmp_path)}, "explain": {"permutation": False},
                        "ensemble": {"folds": 4, "method": "voting", "final": final, "members": [
                            {"name": "memory", "kind": "sklearn", "params": {"n_neighbors": 1},
                             "estimator": "sklearn.neighbors:KNeighborsClassifier"},
                            {"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 5}}]}},
                       data=frame)
    oof = pd.read_csv(run.path / "oof.csv")
    assert len(oof) == run.summary["split"]["train"] and oof["row"].is_unique
    assert oof[["memory_proba_1", "gbm_proba_1"]].notna().all().all()
    memorised = (oof["memory_proba_1"] > 0.5).astype(int) == oof["target"]
    assert memorised.mean() < 0.65  # chance (0.5), not the 1.0 of rows it was fitted on
    # refitted on every training row (or bagged: each row known to 3 of the 4 fold models), the
    # member knows each of them
    seen = frame.loc[oof["row"]]
    views = run.ensemble.views(run.preprocessor, seen.drop(columns=["y"]))
    assert (run.ensemble.members[0].output("binary", views).argmax(axis=1) == seen["y"].to_numpy()).all()


def test_a_column_with_no_value_in_the_training_rows_does_not_stop_the_fast_preset(tmp_path):
    """A sparse column whose only values fell in the test split: scikit-learn 1.9's
    HistGradientBoosting failed on it ("window shape cannot be larger than input array shape",
    found on a 788-column real table); the run trains, and predicts rows that hold a value."""
    import io

    from rich.console import Console

    import fitwell
    from tests.conftest import make_mixed_frame

    frame = make_mixed_frame(0, 300)
    frame["sparse"] = np.nan
    frame.loc[[5, 17], "sparse"] = [1.0, 2.0]  # rows this seed's split puts in test
    run = fitwell.fit(frame, target="label", preset="fast", overrides={"track.runs_dir": str(tmp_path)},
                      console=Console(file=io.StringIO()))
    assert run.metrics["roc_auc"] > 0.85
    assert "hgb" in run.summary["members"]
    rows = frame.loc[[5, 17]].drop(columns=["label"])
    assert run.predict(rows).shape[0] == 2
