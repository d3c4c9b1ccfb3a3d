"""What an ensemble run shows and saves besides its model: the member and combination tables,
the diversity table, out-of-fold predictions and reliability curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fitwell.data.prepare import PreparedData


def save_reliability(run_dir, chosen, rows, test_outputs, y_test, member_outputs, ensemble_output,
                      bins: int) -> None:
    """Reliability-curve data on the test split: each member (before and after its calibration)
    and the ensemble; calibrated members' test scores before calibration go to the member table."""
    from fitwell.evaluate.metrics import classification_metrics, reliability_curve

    curves = {"split": "test", "members": {}, "ensemble": reliability_curve(y_test, ensemble_output, bins)}
    for spec, output in zip(chosen, test_outputs, strict=True):
        entry = {"calibration": spec.calibration, "curve": reliability_curve(y_test, output, bins)}
        raw = member_outputs[spec.name].get("test_uncalibrated")
        if raw is not None:
            entry["uncalibrated"] = reliability_curve(y_test, raw, bins)
            rows[spec.name]["test_uncalibrated"] = classification_metrics(y_test, raw)
        curves["members"][spec.name] = entry
    run_dir.write_json(run_dir.path / "reliability.json", curves)


def describe_wrapping(spec) -> str:
    extra = [f"bagging x{spec.bagging}" if spec.bagging else "", f"AdaBoost x{spec.boosting}" if spec.boosting
             else "", f"{spec.calibration} calibration" if spec.calibration != "none" else ""]
    extra = [e for e in extra if e]
    return f", {', '.join(extra)}" if extra else ""


def headline_metric(task: str) -> str:
    return {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}[task]


def headline(task: str, scores: dict) -> str:
    name = headline_metric(task)
    return f"{name} {scores[name]:.4f}"


def oof_frame(prepared: PreparedData, names: list[str], outputs: list[np.ndarray]) -> pd.DataFrame:
    """Out-of-fold outputs per member, keyed by the row's index in the input table."""
    rows = prepared.split.train
    frame = pd.DataFrame({"row": prepared.frame.index[rows],
                          "target": prepared.frame[prepared.plan.target].iloc[rows].to_numpy()})
    pre = prepared.preprocessor
    for name, out in zip(names, outputs, strict=True):
        if prepared.task == "regression":
            frame[f"{name}_prediction"] = pre.decode_regression(out)
        else:
            for i, label in enumerate(pre.classes_):
                frame[f"{name}_proba_{label}"] = out[:, i]
    return frame


def member_table(rows: dict) -> pd.DataFrame:
    table = []
    for name, row in rows.items():
        flat = {"member": name, "kind": row["kind"], "fit_seconds": round(row["fit_seconds"], 3)}
        for part in ("oof", "validation", "test"):
            for metric, value in row.get(part, {}).items():
                flat[f"{part}_{metric}"] = value
        table.append(flat)
    return pd.DataFrame(table)


def show_tables(console, task, rows, methods, diversity, chosen, score_test) -> None:
    if console is None:
        return
    from rich.table import Table

    metric = headline_metric(task)
    parts = ["oof", "validation"] + (["test"] if score_test else [])
    table = Table(title=f"members and combinations ({metric})")
    table.add_column("")
    for part in parts:
        table.add_column(part.replace("oof", "out-of-fold"), justify="right")
    for name, row in rows.items():
        table.add_row(name, *[cell(row.get(part), metric) for part in parts])
    for method, row in methods.items():
        label = f"[bold]{method}[/] (chosen)" if method == chosen else method
        table.add_row(label, "", *[cell(row.get(part), metric) for part in parts[1:]])
    console.print(table)
    names = list(diversity.index)
    if len(names) > 1:
        div = Table(title="diversity: correlation of out-of-fold errors (lower = more complementary)")
        div.add_column("")
        for name in names:
            div.add_column(name, justify="right")
        for name in names:
            div.add_row(name, *[f"{v:.2f}" for v in diversity.loc[name]])
        console.print(div)


def cell(scores: dict | None, metric: str) -> str:
    return "" if not scores else f"{scores[metric]:.4f}"
