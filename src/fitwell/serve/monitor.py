"""``fitwell monitor RUN --data FILE [--labels]``: new data against the run's drift reference.

Writes ``drift.json`` and ``drift.html`` (in ``RUN/monitor/<file>-<time>/`` unless told where) and
says whether an alert fired: a drifted feature, drifted predictions or, with labels, a primary
metric worse than the test split's beyond ``monitor.performance`` with a 95% bootstrap interval that
excludes the test value. The thresholds are the run's ``monitor`` section, overridable per call.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitwell.config.resolve import replace_values
from fitwell.errors import DamagedRun, DataError, UserError
from fitwell.evaluate.drift import compare, compared_columns
from fitwell.files import write_json, write_text
from fitwell.serve.bundle import load_run
from fitwell.track.bundle import read_frame
from fitwell.track.report import CSS, html_table

PRIMARY = {"binary": ("roc_auc", "higher"), "multiclass": ("accuracy", "higher"),
           "regression": ("rmse", "lower")}
BOOTSTRAP = 200


def monitor(run_path, data, labels: bool = False, overrides: dict[str, Any] | None = None,
            out: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Compare ``data`` (a table path or DataFrame) with the run's reference; returns the result
    (``result["alert"]``) and writes it as JSON and HTML."""
    run = load_run(run_path)
    reference_path = run.path / "reference.json"
    if not reference_path.exists():
        raise DamagedRun(f"{run.path} has no reference.json (runs trained before fitwell saved drift"
                         f" references); train it again: fitwell train {run.path / 'config.yaml'}")
    reference = run.dir.read_json(reference_path)
    limits = run.config.monitor
    if overrides:
        limits = replace_values(run.config, {f"monitor.{k.removeprefix('monitor.')}": v
                                             for k, v in overrides.items()}).monitor
    frame = read_frame(data)
    target = run.preprocessor.plan.target
    if labels and target not in frame:
        raise DataError(f"--labels: the data has no {target!r} column (the run's target); drop --labels to"
                        " check drift without them")
    predictions = run.predict(frame)
    result = compare(reference, frame, predictions, limits)
    result["run"] = str(run.path)
    result["data"] = "frame" if isinstance(data, pd.DataFrame) else str(data)
    result["thresholds"] = limits.model_dump()
    if labels:
        result["performance"] = performance(run.task, frame[target], predictions, reference.get("metrics"),
                                            limits.performance, seed)
    result["alerts"] = alerts(result)
    result["alert"] = bool(result["alerts"])
    folder = out or run.path / "monitor" / f"{stem(data)}-{time.strftime('%Y%m%d-%H%M%S')}"
    write_json(Path(folder) / "drift.json", result)
    write_text(Path(folder) / "drift.html", page(result))
    result["folder"] = str(folder)
    return result


def stem(data) -> str:
    return "frame" if isinstance(data, pd.DataFrame) else Path(data).stem


def performance(task: str, truth: pd.Series, predictions: pd.DataFrame, reference: dict | None,
                tolerance: float, seed: int) -> dict[str, Any]:
    """The primary metric on the labelled new rows, its 95% bootstrap interval, and whether it is
    worse than the test split's by more than ``tolerance`` beyond that interval."""
    name, better = PRIMARY[task]
    known = truth.notna().to_numpy()
    if known.sum() < 2:
        raise DataError(f"--labels: fewer than 2 rows have a {truth.name!r} value")
    truth, predictions = truth[known].reset_index(drop=True), predictions[known].reset_index(drop=True)
    value = metric(task, truth, predictions)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(truth), len(truth))
        try:
            draws.append(metric(task, truth.iloc[pick], predictions.iloc[pick]))
        except ValueError:  # a resample with one class has no ROC AUC
            continue
    low, high = (np.percentile(draws, [2.5, 97.5]).tolist() if draws else [value, value])
    out = {"metric": name, "value": value, "interval_95": [low, high], "rows": int(known.sum())}
    test = (reference or {}).get(name)
    if test is not None:
        worse = value < test - tolerance and high < test if better == "higher" else \
            value > test + tolerance and low > test
        out.update(test_value=test, change=value - test, worse=bool(worse))
    return out


def metric(task: str, truth: pd.Series, predictions: pd.DataFrame) -> float:
    from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

    if task == "regression":
        return float(np.sqrt(mean_squared_error(truth.astype(float), predictions["prediction"])))
    if task == "binary":
        positive = [c for c in predictions.columns if c.startswith("proba_")][-1]
        label = positive.removeprefix("proba_")
        return float(roc_auc_score(truth.astype(str) == label, predictions[positive]))
    return float(accuracy_score(truth.astype(str), predictions["prediction"].astype(str)))


def alerts(result: dict) -> list[str]:
    lines = [f"{name}: {reason}" for name, column in result["columns"].items() if column["drift"]
             for reason in column["reasons"]]
    prediction = result.get("prediction")
    if prediction is not None and prediction["drift"]:
        lines += [f"predictions: {reason}" for reason in prediction["reasons"]]
    perf = result.get("performance")
    if perf and perf.get("worse"):
        lines.append(f"performance: {perf['metric']} {perf['value']:.4f} (95% {perf['interval_95'][0]:.4f}-"
                     f"{perf['interval_95'][1]:.4f}) against {perf['test_value']:.4f} on the test split")
    return lines


def page(result: dict) -> str:
    """The result as one HTML page in the report's style."""
    rows = []
    for name, column in compared_columns(result).items():
        rows.append({"column": name, "kind": column["kind"], "drift": "ALERT" if column["drift"] else "ok",
                     "missing": column.get("missing", ""), "psi": column.get("psi", ""),
                     "wasserstein (sd)": column.get("wasserstein", ""),
                     "total variation": column.get("total_variation", ""),
                     "p-value": column.get("ks_p_value", column.get("chi2_p_value", "")),
                     "new categories": column.get("new_categories", ""),
                     "why": "; ".join(column.get("reasons", []))})
    verdict = ("<p class=missing>ALERT: " + "<br>".join(html.escape(a) for a in result["alerts"]) + "</p>"
               if result["alert"] else "<p>No drift over the thresholds.</p>")
    perf = result.get("performance")
    perf_html = html_table([perf]) if perf else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>fitwell monitor</title><style>{CSS}"
            f"</style></head><body><h1>Drift: {html.escape(Path(result['data']).name)} against"
            f" {html.escape(Path(result['run']).name)}</h1><p>{result['rows']} rows;"
            f" {len(result['drifted_columns'])} of {len(result['columns'])} columns drifted.</p>{verdict}"
            f"<section id=columns><h2>Columns</h2>{html_table(rows)}</section>"
            f"<section id=performance>{perf_html}</section></body></html>")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"override {item!r}: write monitor.KEY=VALUE, e.g. monitor.psi=0.1")
        out[key.strip()] = float(value)
    return out
