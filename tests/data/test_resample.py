"""Over- and under-sampling touch the training split only and balance its classes."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from fitwell.config.schema import ResampleConfig
from fitwell.data.resample import resample_training
from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError
from fitwell.pipeline import train


def imbalanced(n=1000, seed=0) -> pd.DataFrame:
    X, y = make_classification(n_samples=n, n_features=4, n_informative=3, n_redundant=0,
                               weights=[0.95], class_sep=1.0, random_state=seed)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["kind"] = np.where(X[:, 0] > 0, "up", "down")
    frame["label"] = y
    return frame


@pytest.mark.parametrize("method", ["random_over", "random_under", "smote", "smote_tomek"])
def test_training_split_is_rebalanced_and_held_out_rows_untouched(tmp_path, method):
    frame = imbalanced()
    run = train({"data": {"target": "label"}, "train": {"epochs": 3, "progress": False,
                 "resample": {"method": method}}, "track": {"runs_dir": str(tmp_path)}}, data=frame)
    report = json.loads((run.path / "data.json").read_text())
    resampled = report["resampled"]
    before, after = resampled["before"], resampled["after"]
    assert before["1"] < 0.1 * before["0"]
    assert after["1"] / after["0"] > 0.9 if method != "smote_tomek" else after["1"] / after["0"] > 0.8
    assert resampled["rows_before"] == report["split"]["train"]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["split"] == report["split"]  # validation and test sizes unchanged


def test_smote_interpolates_numbers_and_keeps_category_codes_valid():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(180), np.ones(20)].astype(np.int64)
    numeric = (rng.normal(size=(200, 2)) + y[:, None] * 3).astype(np.float32)
    codes = rng.integers(1, 4, size=(200, 1))
    data = TensorData.from_numpy(numeric, codes, y)
    out, report = resample_training(data, ResampleConfig(method="smote"), "multiclass", ["a", "b"], 0)
    assert report["after"] == {"a": 180, "b": 180}
    new = out.numeric[200:].numpy()
    assert np.all(new.mean(axis=0) > 2)  # synthetic minority rows lie among the minority rows
    assert set(np.unique(out.codes.numpy())) <= {1, 2, 3}
    assert out.codes.dtype == data.codes.dtype and out.numeric.dtype == data.numeric.dtype
    half, _ = resample_training(data, ResampleConfig(method="random_under", ratio=0.5), "binary",
                                ["a", "b"], 0)
    assert np.bincount(half.target.numpy()).tolist() == [40, 20]


def test_resample_mistakes_are_config_errors(tmp_path):
    rng = np.random.default_rng(0)
    data = TensorData.from_numpy(rng.normal(size=(30, 2)).astype(np.float32), np.zeros((30, 0), np.int64),
                                 np.r_[np.zeros(27), np.ones(3)].astype(np.int64))
    with pytest.raises(ConfigError, match="k_neighbors"):
        resample_training(data, ResampleConfig(method="smote"), "binary", [0, 1], 0)
    with pytest.raises(ConfigError, match="regression"):
        resample_training(data, ResampleConfig(method="smote"), "regression", [], 0)
    with pytest.raises(ConfigError, match="two classes"):
        resample_training(data, ResampleConfig(method="random_over", ratio=0.5), "multiclass", [0, 1, 2], 0)
