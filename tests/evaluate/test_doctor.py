"""The training doctor: each check on curves with a known answer, and on real runs made to
overfit and to diverge."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification

from fitwell.config import load_config
from fitwell.errors import TrainingFailed
from fitwell.evaluate.doctor import (
    baseline_loss,
    check_dead_units,
    check_gradients,
    check_overfitting,
    check_patience,
    check_slow_learning,
    check_spikes,
    dead_unit_shares,
    diagnose,
)
from fitwell.models.mlp import MLP
from fitwell.pipeline import train


def rows(train_loss, val_loss=None, **extra):
    out = []
    for i, loss in enumerate(train_loss):
        row = {"epoch": i + 1, "train_loss": loss}
        if val_loss is not None:
            row["val_loss"] = val_loss[i]
        for key, values in extra.items():
            row[key] = values[i]
        out.append(row)
    return out


CONFIG = load_config({})


@pytest.mark.parametrize("train_loss, val_loss, expected", [
    ([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.0, 0.8, 0.85, 0.9, 0.95, 1.0], True),   # val up 25%, train down
    ([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.0, 0.8, 0.7, 0.65, 0.6, 0.58], False),  # both improving
    ([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.0, 0.8, 0.81, 0.80, 0.82, 0.83], False),  # within its noise
    # a smooth 9% rise while training loss falls to a third: under the old fixed 10%, now caught
    ([0.9, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3], [1.0, 0.8, 0.81, 0.825, 0.84, 0.855, 0.872], True),
    # a noisy curve swinging 12% around a flat level: noise, not overfitting
    ([1.0, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3], [1.0, 0.8, 0.9, 0.81, 0.92, 0.8, 0.91, 0.82], False),
    ([1.0, 0.8, 0.9], [1.0, 0.8, 1.2], False),  # too short to judge
])
def test_overfitting(train_loss, val_loss, expected):
    finding = check_overfitting(rows(train_loss, val_loss), CONFIG)
    assert (finding is not None) is expected
    if expected:
        assert finding.evidence["best_epoch"] == 2 and "model.dropout=" in finding.fix


def test_spikes_and_slow_learning():
    spiky = check_spikes(rows([1.0, 0.5, 0.4, 1.6, 0.5]), lr=0.1)
    assert spiky.evidence["spikes"][0]["epoch"] == 4 and "train.lr=0.0333" in spiky.fix
    assert check_spikes(rows([1.0, 0.5, 0.4, 0.35]), lr=0.1) is None
    slow = check_slow_learning(rows([1.0, 0.995, 0.99, 0.985, 0.98, 0.975]), lr=1e-5)
    assert slow is not None and "train.lr=0.0001" in slow.fix
    assert check_slow_learning(rows([1.0, 0.6, 0.4, 0.3, 0.25]), lr=1e-3) is None


def test_gradients_exploding_and_vanishing():
    exploding = check_gradients(rows([1.0] * 5, grad_norm=[1, 1, 1, 1, 1], grad_norm_max=[1, 2, 900, 1, 1]))
    assert exploding.check == "exploding_gradients" and exploding.evidence["peaks"][0]["epoch"] == 3
    vanishing = check_gradients(rows([1.0] * 3, grad_norm=[1e-7] * 3, grad_norm_max=[2e-7] * 3))
    assert vanishing.check == "vanishing_gradients"
    assert check_gradients(rows([1.0] * 3, grad_norm=[0.5, 0.4, 0.6], grad_norm_max=[1, 1, 1])) is None


def test_epochs_that_did_not_measure_the_gradient_are_not_peaks(tmp_path):
    """The norm is logged every train.grad_norm_every steps: on a small table (iris, 7 batches an
    epoch) most epochs hold none. They were read as NaN peaks: "exploding gradients" on every run."""
    measured = rows([1.0] * 4, grad_norm=[1, 1, 1, 1], grad_norm_max=[2, 2, 2, 2])
    for row in measured[1:3]:
        del row["grad_norm"], row["grad_norm_max"]
    assert check_gradients(measured) is None
    measured[3]["grad_norm_max"] = float("nan")  # a measured non-finite norm still is one
    peaks = check_gradients(measured).evidence["peaks"]
    assert [peak["epoch"] for peak in peaks] == [4]
    run = train({"data": {"source": "sklearn:iris", "target": "target"},
                 "train": {"epochs": 12, "progress": False},
                 "track": {"runs_dir": str(tmp_path), "report": False}})
    assert sum("grad_norm" in row for row in run.history) < 12  # the setting this guards
    findings = json.loads((run.path / "doctor.json").read_text())["findings"]
    assert "exploding_gradients" not in {f["check"] for f in findings}


def test_patience_unused_when_still_improving_at_the_last_epoch():
    config = load_config({"train": {"epochs": 5}})
    finding = check_patience(rows([1.0, 0.9, 0.8, 0.7, 0.6]), config, best_epoch=5)
    assert finding.check == "early_stopping_unused" and "train.epochs=10" in finding.fix
    assert check_patience(rows([1.0] * 3), config, best_epoch=3) is None  # stopped early
    short = load_config({"train": {"epochs": 5, "early_stopping": {"patience": 2}}})
    assert check_patience(rows([1.0, 0.5, 0.6, 0.7, 0.8]), short, best_epoch=2) is None  # patience used


def test_baseline_loss_is_the_class_entropy():
    assert baseline_loss("binary", [50, 50], True) == pytest.approx(np.log(2))
    assert baseline_loss("regression", None, True) == 1.0
    assert baseline_loss("regression", None, False) is None


def test_dead_units_counted_with_forward_hooks():
    torch.manual_seed(0)
    model = MLP(num_numeric=3, cardinalities=[], out_features=1, hidden_sizes=[8, 4], dropout=0.0)
    with torch.no_grad():
        model.body[0].bias[:6] = -1e3  # six of the first layer's eight units can never fire
    shares = dead_unit_shares(model, torch.randn(200, 3), torch.zeros(200, 0, dtype=torch.long))
    first = shares["body.1"]
    assert first["units"] == 8 and first["dead"] >= 6 and first["rows"] == 200
    finding = check_dead_units(shares)
    assert finding.check == "dead_relu" and "leaky_relu" in finding.fix


def overfit_frame() -> pd.DataFrame:
    X, y = make_classification(n_samples=240, n_features=30, n_informative=3, flip_y=0.25, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(30)])
    frame["label"] = y
    return frame


def test_doctor_diagnoses_a_run_made_to_overfit(tmp_path):
    run = train({"data": {"target": "label"}, "model": {"hidden_sizes": [256, 256], "dropout": 0.0},
                 "train": {"epochs": 60, "lr": 3e-3, "batch_size": 32, "progress": False,
                           "early_stopping": {"enabled": False}},
                 "track": {"runs_dir": str(tmp_path)}}, data=overfit_frame())
    doctor = json.loads((run.path / "doctor.json").read_text())
    (finding,) = [f for f in doctor["findings"] if f["check"] == "overfitting"]
    evidence = finding["evidence"]
    assert evidence["best_epoch"] < 20 and evidence["last_val_loss"] > 1.5 * evidence["best_val_loss"]
    assert "train.early_stopping.enabled=true" in finding["fix"]


def test_doctor_diagnoses_a_run_made_to_diverge(tmp_path, mixed_frame):
    sections = {"data": {"target": "label"}, "model": {"hidden_sizes": [64, 64], "dropout": 0.0},
                "train": {"lr": 1e6, "optimizer": "sgd", "momentum": 0.0, "epochs": 30, "batch_size": 16,
                          "progress": False, "early_stopping": {"enabled": False}},
                "track": {"runs_dir": str(tmp_path), "name": "diverged"}}
    with pytest.raises(TrainingFailed, match=r"doctor suggests: train\.lr=100000 and train\.clip_grad_norm"):
        train(sections, data=mixed_frame)
    doctor = json.loads((tmp_path / "diverged" / "doctor.json").read_text())
    assert doctor["findings"][0]["check"] == "learning_rate_too_high"
    assert doctor["findings"][0]["severity"] == "error"
    assert (tmp_path / "diverged" / "report.html").exists()
    assert not (tmp_path / "diverged" / "metrics.json").exists()  # still resumable, not "finished"


def test_diagnose_passes_leakage_from_the_audit():
    audit = {"findings": [{"check": "target_leakage", "severity": "error", "column": "leak",
                           "message": "column 'leak' alone predicts", "evidence": {},
                           "fix": "data.drop=[leak]"}]}
    found = diagnose(rows([0.5, 0.4], [0.5, 0.4], val_roc_auc=[1.0, 1.0]), CONFIG, task="binary", audit=audit)
    checks = [(f.check, f.severity) for f in found]
    assert ("suspected_leakage", "error") in checks and ("suspected_leakage", "warning") in checks
