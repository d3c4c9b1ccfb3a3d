"""data.synthetic on tables, tabular augmentation, and oversampling images: training split only."""

import json

import numpy as np
import pytest

from fitwell.data.sources import read_table
from fitwell.errors import ConfigError
from fitwell.pipeline import train


def run_config(tmp_path, source, **sections):
    config = {"data": {"source": source}, "train": {"epochs": 15, "lr": 3e-3, "progress": False},
              "track": {"runs_dir": str(tmp_path), "report": False}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


@pytest.mark.parametrize("source, metric, floor", [("sklearn:breast_cancer", "roc_auc", 0.97),
                                                   ("sklearn:diabetes", "r2", 0.1)])
def test_interpolated_rows_join_the_training_split_only(tmp_path, source, metric, floor):
    plain = train(run_config(tmp_path, source, train={"epochs": 1}))
    run = train(run_config(tmp_path, source, data={"synthetic": {"method": "interpolate", "ratio": 0.5}}))
    report = json.loads((run.path / "data.json").read_text())["synthetic"]
    train_rows = plain.summary["split"]["train"]
    assert report["rows_before"] == train_rows
    assert report["rows_added"] == pytest.approx(0.5 * train_rows, abs=2)
    assert run.summary["split"] == plain.summary["split"]  # validation and test untouched
    predictions = (run.path / "test_predictions.csv").read_text().count("\n") - 1
    assert predictions == plain.summary["split"]["test"]
    assert run.metrics[metric] >= floor


def test_interpolation_refuses_images(tmp_path):
    with pytest.raises(ConfigError, match="interpolate makes table rows; this data has image input"):
        train(run_config(tmp_path, "sklearn:digits", data={
            "image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16},
            "synthetic": {"method": "interpolate"}}, model={"name": "cnn"}))


def test_tabular_mixup_and_noise_train(tmp_path):
    run = train(run_config(tmp_path, "sklearn:wine", augment={"mixup": 0.2, "noise": 0.05},
                           train={"epochs": 40}))
    assert run.metrics["accuracy"] >= 0.9


def test_random_oversampling_carries_images(tmp_path):
    frame = read_table("sklearn:digits")
    rare = frame[(frame.target != 0) | (frame.index % 6 == 0)]  # class 0 cut to a sixth
    run = train({"data": {"image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16}},
                 "model": {"name": "cnn", "channels": [8]},
                 "train": {"epochs": 1, "progress": False, "resample": {"method": "random_over"}},
                 "track": {"runs_dir": str(tmp_path), "report": False}}, data=rare)
    counts = json.loads((run.path / "data.json").read_text())["resampled"]["after"]
    assert len(set(counts.values())) == 1  # every class as large as the largest
    assert np.isfinite(run.metrics["log_loss"])
