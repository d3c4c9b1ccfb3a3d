"""data.synthetic on tables, tabular augmentation, and oversampling images: training split only."""

import json

import numpy as np
import pandas as pd
import pytest

from fitwell.cli import run_cli
from fitwell.data.sources import read_table
from fitwell.errors import ConfigError
from fitwell.pipeline import train
from fitwell.track.report import render


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
    page = render(run.path)  # the HTML report says so too
    assert f"{report['rows_added']} interpolate rows added to the {train_rows} training rows" in page


def test_interpolation_refuses_images(tmp_path):
    with pytest.raises(ConfigError, match="interpolate makes table rows; this data has image input"):
        train(run_config(tmp_path, "sklearn:digits", data={
            "image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16},
            "synthetic": {"method": "interpolate"}}, model={"name": "cnn"}))


def test_tabular_mixup_noise_and_test_time_noise(tmp_path):
    run = train(run_config(tmp_path, "sklearn:wine", augment={"mixup": 0.2, "noise": 0.05},
                           train={"epochs": 40}))
    assert run.metrics["accuracy"] >= 0.9
    frame = read_table("sklearn:wine")
    plain, averaged = run.predict_proba(frame), run.predict_proba(frame, tta=8)
    assert np.allclose(averaged.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(plain, averaged) and np.abs(plain - averaged).max() < 0.3
    assert (averaged.argmax(1) == plain.argmax(1)).mean() >= 0.95  # small noise: mostly the same calls
    csv, out = tmp_path / "rows.csv", tmp_path / "predicted.csv"
    frame.head(20).to_csv(csv, index=False)
    assert run_cli(["predict", str(run.path), "--data", str(csv), "--tta", "8", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 20


def test_test_time_noise_for_regression_and_refused_without_augmentation(tmp_path):
    run = train(run_config(tmp_path, "sklearn:diabetes", augment={"noise": 0.1}))
    frame = read_table("sklearn:diabetes").head(50)
    plain, averaged = run.predict(frame)["prediction"], run.predict(frame, tta=6)["prediction"]
    assert not np.allclose(plain, averaged) and np.corrcoef(plain, averaged)[0, 1] > 0.95
    bare = train(run_config(tmp_path, "sklearn:diabetes", train={"epochs": 1}))
    with pytest.raises(ConfigError, match="augment.tta: no test-time augmentation is configured"):
        bare.predict(frame, tta=4)


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
