"""Task metrics from scikit-learn: the full test set once at the end, a cheap set every epoch."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1 (macro for multiclass), ROC AUC, log loss.

    Args:
        y_true: class indices, shape (n,).
        proba: class probabilities, shape (n, num_classes).
    """
    num_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    labels = np.arange(num_classes)
    with warnings.catch_warnings():  # a labelled file holding one class is legitimate here
        warnings.filterwarnings("ignore", message="A single label was found")
        out = _classification(y_true, proba, pred, labels, num_classes)
    out["roc_auc"] = _roc_auc(y_true, proba)
    return {k: float(v) for k, v in out.items()}


def _classification(y_true, proba, pred, labels, num_classes) -> dict:
    return {
        "accuracy": skm.accuracy_score(y_true, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, pred),
        # macro F1 over the classes present (in truth or prediction): a class absent from a
        # small labelled file must not count as an F1 of zero
        "f1": skm.f1_score(y_true, pred, average="binary" if num_classes == 2 else "macro",
                           zero_division=0),
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels),
    }


def _roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    present = np.unique(y_true)
    try:
        if proba.shape[1] == 2:
            return skm.roc_auc_score(y_true, proba[:, 1]) if len(present) == 2 else math.nan
        if len(present) < proba.shape[1]:
            return math.nan
        return skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=np.arange(proba.shape[1]))
    except ValueError:
        return math.nan


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R2 in the target's own units."""
    return {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, pred))),
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "r2": float(skm.r2_score(y_true, pred)),
    }


def epoch_metrics(task: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """The cheap per-epoch set (see ``config.schema.EPOCH_METRICS``), loss excluded.

    ``output`` is class probabilities for classification, predictions in target units otherwise.
    """
    if task == "regression":
        return regression_metrics(y_true, output)
    out = {"accuracy": float((output.argmax(axis=1) == y_true).mean())}
    if task == "binary":
        out["roc_auc"] = float(_roc_auc(y_true, output))
    return out


def probabilities(task: str, logits: np.ndarray) -> np.ndarray:
    """Class probabilities, shape (n, num_classes), from raw model outputs."""
    if task == "binary":
        p1 = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
        return np.stack([1 - p1, p1], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)
