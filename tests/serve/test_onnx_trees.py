"""Boosted trees as ONNX graph pieces predict what the library does on doubles: a value next to a
threshold goes the same way, missing values and categories go where the model learnt, and a
regression value keeps its digits when it is a large mean plus a large output."""

from __future__ import annotations

import lightgbm
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from fitwell.serve.onnx_graph import Builder
from fitwell.serve.onnx_trees import lightgbm as lightgbm_graph


def graph_predict(model, X: np.ndarray, classify: bool) -> np.ndarray:
    g = Builder()
    out = lightgbm_graph(g, model, "X", classify)
    assert out is not None  # rebuilt here, not handed to onnxmltools
    g.op("Identity", [out], name="Y")
    onnx_model = g.model([helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["N", X.shape[1]])],
                         [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, ["N", "K"])])
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


def table(rows: int, seed: int = 0) -> np.ndarray:
    """Numbers with missing values (column 0), a column without any (1), category codes (2)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 8, rows).astype(float)
    X = np.column_stack([rng.normal(size=rows), rng.normal(size=rows), codes])
    X[rng.random(rows) < 0.15, 0] = np.nan
    return X


def next_to_thresholds(model, X: np.ndarray) -> np.ndarray:
    """Rows whose numbers sit one double above and below the model's thresholds, missing values
    in every column, and categories the model never saw."""
    cuts = []

    def walk(node):
        if "split_feature" in node:
            if node["decision_type"] == "<=":
                cuts.append((node["split_feature"], float(node["threshold"])))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    rows = []
    for feature, threshold in cuts[:200]:
        for value in (np.nextafter(threshold, -np.inf), threshold, np.nextafter(threshold, np.inf)):
            row = X[len(rows) % len(X)].copy()
            row[feature] = value
            rows.append(row)
    extra = X[:6].copy()
    extra[0, :] = np.nan
    extra[1, 1] = np.nan  # a column that had no missing value in training
    extra[2, 2], extra[3, 2], extra[4, 2] = 11.0, np.nan, -1.0  # unseen, missing, negative
    return np.vstack([np.asarray(rows), extra, X])


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_lightgbm_rebuilt_with_double_thresholds_predicts_what_lightgbm_does(task):
    X = table(600)
    signal = np.nan_to_num(X[:, 0]) + X[:, 1] + (X[:, 2] % 3 == 0)
    if task == "regression":
        y = 1e6 + 1e5 * signal  # a large mean: float32 sums keep ~1 unit of it
        model = lightgbm.LGBMRegressor(n_estimators=60, min_child_samples=5, verbose=-1)
    else:
        y = (signal > 0.7).astype(int) if task == "binary" else np.digitize(signal, [0.0, 1.0])
        model = lightgbm.LGBMClassifier(n_estimators=40, min_child_samples=5, verbose=-1)
    model.fit(X, y, categorical_feature=[2])
    rows = next_to_thresholds(model, X)
    got = graph_predict(model, rows, task != "regression")
    if task == "regression":
        assert np.abs(got.ravel() - model.predict(rows)).max() <= 1e-6  # of values near 1e6
    else:
        # class scores are summed in float32 (~1e-8 here); a row down the wrong branch is ~1e-2 off
        assert np.abs(got - model.predict_proba(rows)).max() <= 1e-7


def test_a_model_this_does_not_rebuild_is_left_to_onnxmltools():
    X = table(300)
    model = lightgbm.LGBMRegressor(n_estimators=5, zero_as_missing=True, verbose=-1).fit(X, X[:, 1])
    assert lightgbm_graph(Builder(), model, "X", False) is None


def test_a_class_whose_tree_is_a_single_leaf_keeps_its_value():
    """duke_forest: a fold model early-stopped at its first iteration, one class's tree a single
    leaf (-4.13). onnxruntime's TreeEnsembleRegressor left ``base_values_as_tensor`` out of the
    sum, so that class read 0 and its probability was 0.49 off."""
    X = table(300)
    rng = np.random.default_rng(1)
    y = (X[:, 1] > 0).astype(int)
    y[rng.choice(300, 4, replace=False)] = 2  # rare: its hessian cannot fill a leaf
    model = lightgbm.LGBMClassifier(n_estimators=3, min_sum_hessian_in_leaf=5.0, verbose=-1).fit(X, y)
    shapes = [("leaf" if "leaf_value" in t["tree_structure"] else "split")
              for t in model.booster_.dump_model()["tree_info"]]
    assert "leaf" in shapes and "split" in shapes
    new = next_to_thresholds(model, X)
    np.testing.assert_allclose(graph_predict(model, new, True), model.predict_proba(new), atol=1e-6)
