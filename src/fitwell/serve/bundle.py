"""Load any finished run directory: a single model's, an ensemble's or a reinforcement policy's."""

from __future__ import annotations

from pathlib import Path

from fitwell.ensemble.model import ENSEMBLE_FILE, EnsembleRun
from fitwell.tasks.reinforcement import PolicyRun, load_policy
from fitwell.tasks.unsupervised import ESTIMATORS_FILE, UnsupervisedRun, load_unsupervised
from fitwell.track.bundle import Run


def load_run(path: str | Path) -> Run | EnsembleRun | PolicyRun | UnsupervisedRun:
    """Load a finished run directory: a Run, an EnsembleRun for a ``fitwell ensemble`` run, a
    PolicyRun for a reinforcement run, or an UnsupervisedRun (clustering, anomaly, embedding).

    Example:
        >>> run = load_run("runs/wine-20261123-101500-000")  # doctest: +SKIP
        >>> run.predict(frame)  # doctest: +SKIP
    """
    if (Path(path) / ENSEMBLE_FILE).exists():
        return EnsembleRun(path)
    if (Path(path) / "policy.zip").exists():
        return load_policy(path)
    if (Path(path) / ESTIMATORS_FILE).exists():
        return load_unsupervised(path)
    return Run(path)
