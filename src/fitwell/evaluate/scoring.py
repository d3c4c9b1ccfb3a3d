"""Scoring a trained model once: test metrics, the prediction table of the test rows, temperature
calibration fitted on validation, and the validation row the run kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.config.schema import RunConfig
from fitwell.data.prepare import PreparedData
from fitwell.data.preprocess import Preprocessor
from fitwell.errors import ConfigError
from fitwell.evaluate.metrics import classification_metrics, probabilities, regression_metrics
from fitwell.files import write_json


def test_metrics(task: str, pre: Preprocessor, output: np.ndarray, target: np.ndarray) -> dict:
    if task == "regression":
        return regression_metrics(pre.decode_regression(target), pre.decode_regression(output.reshape(-1)))
    return classification_metrics(target, probabilities(task, output))


def calibrate(config: RunConfig, prepared: PreparedData, trainer, final, folder: Path,
              say) -> float | None:
    """Fit the configured calibration on the validation split; save it; return the temperature."""
    if config.calibration.method == "none" or prepared.task == "regression":
        return None
    if len(prepared.val) == 0:
        raise ConfigError("calibration.method: temperature is fitted on the validation split, but"
                          " split.val is 0; give the validation split a share")
    from fitwell.evaluate.calibration import fit_temperature
    from fitwell.evaluate.metrics import expected_calibration_error

    logits = trainer.predict_output(prepared.val, module=final).cpu().numpy()
    target = prepared.val.target.numpy()
    temperature = fit_temperature(prepared.task, logits, target)
    before = expected_calibration_error(target, probabilities(prepared.task, logits))
    after = expected_calibration_error(target, probabilities(prepared.task, logits / temperature))
    write_json(folder / "calibration.json", {
        "method": "temperature", "temperature": temperature, "fitted_on": "validation split",
        "val_ece_before": before, "val_ece_after": after})
    say(f"calibration: temperature {temperature:.3f} (validation ECE {before:.4f} -> {after:.4f})")
    return temperature


def write_reliability(folder: Path, task: str, target: np.ndarray, logits: np.ndarray,
                      temperature: float, bins: int) -> None:
    from fitwell.evaluate.metrics import reliability_curve

    write_json(folder / "reliability.json", {
        "split": "test",
        "uncalibrated": reliability_curve(target, probabilities(task, logits), bins),
        "calibrated": reliability_curve(target, probabilities(task, logits / temperature), bins)})


def prediction_frame(prepared: PreparedData, output: np.ndarray) -> pd.DataFrame:
    """Test-row predictions keyed by the row's index in the input table."""
    pre = prepared.preprocessor
    rows = prepared.frame.index[prepared.split.test]
    target = prepared.frame[prepared.plan.target].iloc[prepared.split.test].to_numpy()
    frame = pd.DataFrame({"row": rows, "target": target})
    if prepared.task == "regression":
        frame["prediction"] = pre.decode_regression(output.reshape(-1))
        return frame
    proba = probabilities(prepared.task, output)
    frame["prediction"] = np.asarray(pre.classes_, dtype=object)[proba.argmax(axis=1)]
    for i, label in enumerate(pre.classes_):
        frame[f"proba_{label}"] = proba[:, i]
    return frame


def final_validation(state) -> dict:
    """The epoch row whose weights were kept: the best epoch when early stopping restored it."""
    if not state.history:
        return {}
    if state.best_epoch:
        return dict(state.history[state.best_epoch - 1])
    return dict(state.history[-1])
