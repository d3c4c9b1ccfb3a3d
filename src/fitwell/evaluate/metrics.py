"""Task metrics from scikit-learn: the full test set once at the end, a cheap set every epoch."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1 (binary, or macro for multiclass) and its macro and
    weighted forms, ROC AUC, PR AUC (average precision), log loss, Brier score, expected
    calibration error.

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
    order = ("accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_weighted", "roc_auc", "pr_auc",
             "log_loss", "brier", "ece")
    return {k: float(out[k]) for k in order}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the share-weighted gap between confidence and accuracy over equal-width
    confidence bins (Guo et al. 2017). scikit-learn has reliability curves but no ECE."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_curve(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict:
    """Top-label reliability data: per confidence bin, the mean confidence, accuracy and count."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = [{"bin": [float(edges[b]), float(edges[b + 1])], "count": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()) if (which == b).any() else None,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else None}
            for b in range(bins)]
    return {"bins": rows, "ece": expected_calibration_error(y_true, proba)}


def _pr_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    if proba.shape[1] == 2:
        return skm.average_precision_score(y_true, proba[:, 1]) if len(np.unique(y_true)) == 2 else math.nan
    from sklearn.preprocessing import label_binarize

    onehot = label_binarize(y_true, classes=np.arange(proba.shape[1]))
    present = onehot.sum(axis=0) > 0
    return skm.average_precision_score(onehot[:, present], proba[:, present], average="macro")


def _classification(y_true, proba, pred, labels, num_classes) -> dict:
    return {
        "f1_macro": skm.f1_score(y_true, pred, average="macro", zero_division=0),
        "f1_weighted": skm.f1_score(y_true, pred, average="weighted", zero_division=0),
        "pr_auc": _pr_auc(y_true, proba),
        "brier": (skm.brier_score_loss(y_true, proba[:, 1]) if num_classes == 2
                  else skm.brier_score_loss(y_true, proba, labels=labels)),
        "ece": expected_calibration_error(y_true, proba),
        "accuracy": skm.accuracy_score(y_true, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, pred),
        # macro F1 over the classes present (in truth or prediction): a class absent from a
        # small labelled file must not count as an F1 of zero
        "f1": skm.f1_score(y_true, pred, average="binary" if num_classes == 2 else "macro",
                           zero_division=0),
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels),
    }


def _roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC; for several classes one-vs-rest, averaged over the classes ``y_true`` holds (a
    class with no row has no AUC: a rare class can miss a test split), NaN with one class."""
    present = np.unique(y_true)
    try:
        if len(present) < 2:
            return math.nan
        if proba.shape[1] == 2:
            return skm.roc_auc_score(y_true, proba[:, 1])
        if len(present) < proba.shape[1]:
            return float(np.mean([skm.roc_auc_score(y_true == c, proba[:, c]) for c in present]))
        return skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=np.arange(proba.shape[1]))
    except ValueError:
        return math.nan


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R2, MAPE and median absolute error, in the target's own units. MAPE is left out
    where it is undefined (``mape_undefined``)."""
    out = {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, pred))),
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "r2": float(skm.r2_score(y_true, pred)),
        "mape": float(skm.mean_absolute_percentage_error(y_true, pred)),
        "median_ae": float(skm.median_absolute_error(y_true, pred)),
    }
    if mape_undefined(y_true):
        del out["mape"]
    return out


def mape_undefined(y_true: np.ndarray) -> str | None:
    """Why MAPE means nothing for these targets (a zero, or values near zero on their scale), or None.

    Example:
        >>> mape_undefined(np.array([0.0, 3.0, 5.0]))
        'MAPE left out: the target is 0 in 1 of 3 rows, where a percentage error is undefined'
    """
    values = np.abs(np.asarray(y_true, dtype=float))
    if len(values) == 0:
        return None
    zeros = int((values == 0).sum())
    if zeros:
        return (f"MAPE left out: the target is 0 in {zeros} of {len(values)} rows, where a percentage error"
                " is undefined")
    scale = float(np.median(values))
    if scale > 0 and values.min() < 1e-6 * scale:
        return (f"MAPE left out: target values down to {values.min():.3g} against a median of {scale:.3g}"
                " make percentage errors explode")
    return None


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
        from scipy.special import expit  # no overflow warning for large negative logits

        p1 = expit(logits.reshape(-1).astype(np.float64))
        return np.stack([1 - p1, p1], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)
