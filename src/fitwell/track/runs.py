"""``fitwell runs``: the runs under a folder as a table, and two runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fitwell.config.load import parse_yaml
from fitwell.errors import UserError
from fitwell.track.loggers import flatten
from fitwell.track.run_dir import resumable

PRIMARY = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2", "reinforcement": "mean_return",
           "clustering": "silhouette", "anomaly": "roc_auc", "embedding": "explained_variance"}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def describe(path: Path, root: Path | None = None) -> dict[str, Any]:
    """One run's row: name, kind, task, status, main test metric, duration, start time."""
    metrics = _json(path / "metrics.json")
    data = _json(path / "data.json")
    env = _json(path / "env.json")
    task = metrics.get("task") or data.get("task")
    metric = PRIMARY.get(task or "")
    test = metrics.get("test") or {}
    status, reason = run_status(path, metrics)
    if status == "completed" and metrics and not test:
        status = "trial"  # a tuning trial: scored on validation only
    kind = "ensemble" if (path / "ensemble.json").exists() else "train"
    return {"name": str(path.relative_to(root)) if root else path.name, "path": str(path), "kind": kind,
            "task": task, "status": status, "reason": reason, "resumable": resumable(path),
            "metric": metric,
            "value": test.get(metric) if metric else None,
            "val_loss": (metrics.get("validation") or {}).get("val_loss"),
            "duration_s": metrics.get("duration_s"), "started": env.get("started")}


def _alive(pid) -> bool:
    import os

    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError, OverflowError):
        return False
    return True


def run_status(path: Path, metrics: dict | None = None) -> tuple[str, str | None]:
    """``completed``, ``failed`` (with its reason), ``running``, or ``interrupted`` (a run whose
    process is gone: resumable when it left a checkpoint, see ``resumable``)."""
    import socket

    saved = _json(path / "status.json")
    metrics = _json(path / "metrics.json") if metrics is None else metrics
    status = saved.get("status")
    if status == "running":
        here = saved.get("host") == socket.gethostname()
        if here and _alive(saved.get("pid")):
            return "running", None
        status = "interrupted"
        saved["reason"] = "its process ended without finishing (killed, or the machine stopped)"
    if status is None:  # written before status.json existed
        if metrics:
            return "completed", None
        if (path / "doctor.json").exists():
            return "failed", "see doctor.json"
        status = "interrupted"
    if status == "interrupted":
        advice = (f"resume with: fitwell train --resume {path}" if resumable(path)
                  else f"nothing to resume; start it again: fitwell train {path / 'config.yaml'}")
        return "interrupted", f"{saved.get('reason') or 'stopped before finishing'}; {advice}"
    return status, saved.get("reason")


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every run directory (a folder with ``config.yaml``) up to two levels under ``runs_dir``
    (tuning studies keep their trials one level down), newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"runs folder {root} does not exist; give the folder with --dir (track.runs_dir)")
    found = [p.parent for p in (*root.glob("*/config.yaml"), *root.glob("*/*/config.yaml"))]
    rows = [describe(p, root) for p in found]
    return sorted(rows, key=lambda r: r["started"] or "", reverse=True)


def _config(path: Path) -> dict[str, Any]:
    if not (path / "config.yaml").exists():
        raise UserError(f"{path} is not a fitwell run directory (no config.yaml)")
    return flatten(parse_yaml((path / "config.yaml").read_text()) or {})


def compare_runs(first: str | Path, second: str | Path, everything: bool = False) -> dict[str, list]:
    """Config keys and metrics of two runs side by side: ``config`` rows are (key, first, second)
    for the keys that differ (all keys with ``everything``); ``metrics`` rows are (name, first,
    second, second - first) over the test and validation metrics."""
    a, b = Path(first), Path(second)
    ca, cb = _config(a), _config(b)
    keys = sorted(set(ca) | set(cb))
    config = [(k, ca.get(k), cb.get(k)) for k in keys if everything or ca.get(k) != cb.get(k)]
    ma, mb = _json(a / "metrics.json"), _json(b / "metrics.json")
    metrics = []
    for section, prefix in (("test", "test "), ("validation", "")):
        sa, sb = ma.get(section) or {}, mb.get(section) or {}
        for name in dict.fromkeys([*sa, *sb]):
            va, vb = sa.get(name), sb.get(name)
            delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            metrics.append((f"{prefix}{name}", va, vb, delta))
    for name in ("epochs", "best_epoch", "duration_s"):
        va, vb = ma.get(name), mb.get(name)
        if va is not None or vb is not None:
            delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            metrics.append((name, va, vb, delta))
    return {"config": config, "metrics": metrics}
