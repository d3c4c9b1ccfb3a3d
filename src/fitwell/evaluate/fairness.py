"""The bias audit: the test split's metrics per group of each ``data.sensitive`` column, with
fairlearn's MetricFrame and its demographic-parity and equalized-odds differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fitwell.findings import Finding

MAX_GROUPS = 10  # a numeric column with more distinct values is cut into quartiles
GAP_WARNING = 0.1


def group_labels(values: pd.Series) -> tuple[pd.Series, str | None]:
    """Group names of a sensitive column: its values, or quartile ranges of a many-valued number."""
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_GROUPS:
        binned = pd.qcut(values, 4, duplicates="drop").astype(str)
        return binned.where(values.notna(), "<missing>"), "cut into quartiles"
    labels = values.astype(object).map(lambda v: "<missing>" if pd.isna(v) else str(v))
    return labels, None


def _group_findings(name: str, by_group, judged: list, sizes, differences: dict, task: str,
                    min_group_size: int) -> list[Finding]:
    """Groups too small to judge, and gaps between judged groups above GAP_WARNING."""
    findings: list[Finding] = []
    small = [str(g) for g in by_group.index if g not in judged]
    if small:
        findings.append(Finding(
            "small_group", "warning",
            f"{name!r}: group{'s' if len(small) > 1 else ''} {', '.join(small)} "
            f"{'have' if len(small) > 1 else 'has'} fewer than {min_group_size} test rows"
            f" ({', '.join(str(int(sizes[g])) for g in by_group.index if g not in judged)}):"
            " too few to judge",
            column=name, evidence={"groups": small, "min_group_size": min_group_size},
            fix="collect more rows of those groups, or judge them by cross-validation (fitwell cv)"))
    for key, value in differences.items():
        if value is not None and value > GAP_WARNING and task != "regression":
            findings.append(Finding(
                "group_gap", "warning",
                f"{name!r}: {key.replace('_', ' ')} is {value:.2f} between groups of at least"
                f" {min_group_size} test rows", column=name, evidence={key: value},
                fix="inspect the per-group table; consider reweighting (data.weight_column) or"
                    " fairlearn's mitigation (ThresholdOptimizer, ExponentiatedGradient)"))
    return findings


def bias_audit(predictions: pd.DataFrame, sensitive: pd.DataFrame, task: str, classes: list,
               min_group_size: int = 30) -> tuple[dict[str, Any], list[Finding]]:
    """Per-group metrics of the test predictions for each sensitive column.

    Args:
        predictions: ``target`` and ``prediction`` columns (labels or values), row-aligned.
        sensitive: the sensitive columns' raw values for the same rows.
        task: binary, multiclass or regression.
        classes: class labels in model order (the second is the positive class of a binary task).
        min_group_size: smaller groups are reported but not judged.

    Returns:
        (the table for fairness.json, findings: small groups, large gaps between groups).

    Example:
        >>> preds = pd.DataFrame({"target": [1, 0, 1, 0] * 20, "prediction": [1, 0, 0, 0] * 20})
        >>> table, _ = bias_audit(preds, pd.DataFrame({"g": ["a", "b"] * 40}), "binary", [0, 1], 10)
        >>> table["columns"]["g"]["differences"]["demographic_parity_difference"]
        0.5
    """
    from fairlearn.metrics import MetricFrame

    y_true = predictions["target"].to_numpy()
    y_pred = predictions["prediction"].to_numpy()
    positive = classes[1] if task == "binary" else None
    out: dict[str, Any] = {"split": "test", "task": task, "min_group_size": min_group_size,
                           "positive_class": positive, "columns": {}}
    findings: list[Finding] = []
    if task == "binary":
        y_true, y_pred = _is(y_true, positive), _is(y_pred, positive)
    for name in sensitive.columns:
        groups, note = group_labels(sensitive[name].reset_index(drop=True))
        metrics = _metrics(task)
        frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
        by_group = frame.by_group
        sizes = by_group["count"].astype(int)
        judged = sizes[sizes >= min_group_size].index.tolist()
        rows = []
        for group, values in by_group.iterrows():
            row = {"group": str(group), "judged": group in judged}
            row.update({k: _plain(v) for k, v in values.items()})
            rows.append(row)
        small = [str(g) for g in by_group.index if g not in judged]
        differences = _differences(task, y_true, y_pred, groups, judged)
        out["columns"][name] = {"groups": rows, "differences": differences, "small_groups": small,
                                "note": note}
        findings += _group_findings(name, by_group, judged, sizes, differences, task, min_group_size)
    return out, findings


def _is(values: np.ndarray, positive) -> np.ndarray:
    return np.array([str(v) == str(positive) for v in values], dtype=int)


def _metrics(task: str) -> dict:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, mean_absolute_error

    if task == "binary":
        return {"count": count, "accuracy": accuracy_score, "selection_rate": selection_rate,
                "true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate}
    if task == "multiclass":
        return {"count": count, "accuracy": accuracy_score}
    return {"count": count, "mae": mean_absolute_error,
            "mean_prediction": lambda y_true, y_pred: float(np.mean(y_pred)),
            "mean_target": lambda y_true, y_pred: float(np.mean(y_true))}


def _differences(task: str, y_true, y_pred, groups: pd.Series, judged: list) -> dict[str, float | None]:
    """Gaps between the groups large enough to judge (None when fewer than two are)."""
    from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
    from sklearn.metrics import accuracy_score, mean_absolute_error

    keep = groups.isin(judged).to_numpy()
    names = {"binary": ("demographic_parity_difference", "equalized_odds_difference",
                        "accuracy_difference"),
             "multiclass": ("accuracy_difference",), "regression": ("mae_difference",)}[task]
    if len(judged) < 2:
        return dict.fromkeys(names)
    t, p, g = y_true[keep], y_pred[keep], groups[keep]
    if task == "binary":
        return {"demographic_parity_difference": float(demographic_parity_difference(
                    t, p, sensitive_features=g)),
                "equalized_odds_difference": float(equalized_odds_difference(t, p, sensitive_features=g)),
                "accuracy_difference": float(MetricFrame(metrics=accuracy_score, y_true=t, y_pred=p,
                                                         sensitive_features=g).difference())}
    if task == "multiclass":
        return {"accuracy_difference": float(MetricFrame(metrics=accuracy_score, y_true=t, y_pred=p,
                                                         sensitive_features=g).difference())}
    return {"mae_difference": float(MetricFrame(metrics=mean_absolute_error, y_true=t, y_pred=p,
                                                sensitive_features=g).difference())}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
