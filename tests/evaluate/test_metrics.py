import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fitwell.evaluate.metrics import classification_metrics, probabilities, regression_metrics


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    got = classification_metrics(y, proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, proba.argmax(1)))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_f1_ignores_classes_absent_from_a_small_file():
    y = np.array([2, 2, 2, 2])
    proba = np.tile([0.0, 0.1, 0.9], (4, 1))
    got = classification_metrics(y, proba)
    assert got["f1"] == 1.0 and got["accuracy"] == 1.0
    assert math.isnan(got["roc_auc"])  # undefined with one class present


def test_roc_auc_averages_the_classes_a_test_split_holds():
    """A rare class can miss the test rows: the one-vs-rest AUC is then the mean over the classes
    present (sklearn's macro one-vs-rest on them), not NaN."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)  # classes 0-2 of 4; class 3 has no row
    proba = rng.dirichlet(np.ones(4), 90)
    proba[np.arange(90), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    expected = np.mean([skm.roc_auc_score(y == c, proba[:, c]) for c in range(3)])
    assert classification_metrics(y, proba)["roc_auc"] == pytest.approx(expected)
    assert expected > 0.7  # the signal put in is seen


def test_regression_metrics():
    got = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert got["mae"] == pytest.approx(1 / 3) and got["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert got["r2"] == pytest.approx(0.5)


def test_probabilities_sum_to_one():
    assert np.allclose(probabilities("multiclass", np.array([[1.0, 2.0, 3.0]])).sum(1), 1)
    assert probabilities("binary", np.array([[0.0]])).tolist() == [[0.5, 0.5]]


def test_more_metrics_come_from_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, 80), 0, 1)
    proba = np.stack([1 - p1, p1], axis=1)
    got = classification_metrics(y, proba)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p1))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p1))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, proba.argmax(1), average="weighted"))
    reg = regression_metrics(np.array([2.0, 4.0, 10.0]), np.array([1.0, 5.0, 10.0]))
    assert reg["mape"] == pytest.approx((0.5 + 0.25 + 0) / 3) and reg["median_ae"] == 1.0


def test_expected_calibration_error_by_hand():
    from fitwell.evaluate.metrics import expected_calibration_error

    # four rows at confidence 0.9 with 2 right (gap 0.4), four at 0.6 with 3 right (gap 0.15)
    proba = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)
    y = np.array([0, 0, 1, 1, 0, 0, 0, 1])
    assert expected_calibration_error(y, proba) == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)


def test_mape_is_left_out_where_it_is_undefined(tmp_path):
    import pandas as pd

    import fitwell
    from fitwell.evaluate.metrics import mape_undefined, regression_metrics

    assert "mape" not in regression_metrics(np.array([0.0, 1.0, 2.0]), np.array([0.1, 1.0, 2.0]))
    assert "mape" in regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.0, 3.0]))
    assert mape_undefined(np.array([1e-9, 5.0, 6.0])) is not None
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["y"] = np.where(rng.random(200) < 0.3, 0.0, np.abs(3 * frame["x"]) + 1)
    run = fitwell.train({"data": {"target": "y"}, "track": {"runs_dir": str(tmp_path)},
                         "train": {"epochs": 3, "progress": False}, "explain": {"permutation": False}},
                        data=frame)
    assert "mape" not in run.metrics and "rmse" in run.metrics
    assert run.summary["metric_notes"][0].startswith("MAPE left out: the target is 0 in")
