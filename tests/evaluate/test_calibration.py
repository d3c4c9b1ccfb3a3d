import json

import numpy as np
import pytest

import fitwell
from fitwell.evaluate.calibration import fit_temperature


def test_temperature_recovers_the_sharpening_factor():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from softmax(logits): T = 1
    assert fit_temperature("multiclass", logits, y) == pytest.approx(1.0, abs=0.1)
    assert fit_temperature("multiclass", logits * 5, y) == pytest.approx(5.0, rel=0.1)


def test_temperature_scaling_lowers_ece_on_an_over_confident_model(tmp_path, mixed_frame):
    config = {"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path), "name": "hot"},
              "model": {"hidden_sizes": [256, 256], "dropout": 0.0},
              "train": {"epochs": 80, "lr": 0.01, "progress": False, "early_stopping": {"enabled": False}},
              "calibration": {"method": "temperature"}}
    run = fitwell.train(config, data=mixed_frame)
    saved = json.loads((run.path / "calibration.json").read_text())
    summary = run.summary
    assert saved["temperature"] > 1.5  # the memorising network was too sure of itself
    assert saved["val_ece_after"] < saved["val_ece_before"]
    # on the 45 test rows ECE moves with its bins (0.110 -> 0.112 once the missing colours became a
    # category of their own); the log loss, a proper score, shows the fix: 1.42 -> 0.29
    assert summary["test"]["log_loss"] < 0.5 * summary["test_uncalibrated"]["log_loss"]
    assert summary["test"]["accuracy"] == summary["test_uncalibrated"]["accuracy"]
    reliability = json.loads((run.path / "reliability.json").read_text())
    assert reliability["calibrated"]["ece"] == pytest.approx(summary["test"]["ece"])
    # predict applies the temperature: less extreme than the raw network's probabilities
    calibrated = run.predict_proba(mixed_frame)
    run.temperature = None
    raw = run.predict_proba(mixed_frame)
    assert calibrated.max(1).mean() < raw.max(1).mean()
    assert (calibrated.argmax(1) == raw.argmax(1)).all()


def test_calibration_needs_a_validation_split():
    with pytest.raises(fitwell.ConfigError, match=r"calibration\.method: .*split\.val is 0"):
        fitwell.load_config({"split": {"train": 0.8, "val": 0.0, "test": 0.2},
                             "train": {"early_stopping": {"enabled": False}},
                             "calibration": {"method": "temperature"}})
