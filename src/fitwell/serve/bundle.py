"""Load any finished run directory: a single model's or an ensemble's."""

from __future__ import annotations

from pathlib import Path

from fitwell.ensemble.model import ENSEMBLE_FILE, EnsembleRun
from fitwell.track.bundle import Run


def load_run(path: str | Path) -> Run | EnsembleRun:
    """Load a finished run directory: a Run, or an EnsembleRun for a ``fitwell ensemble`` run.

    Example:
        >>> run = load_run("runs/wine-20261123-101500-000")  # doctest: +SKIP
        >>> run.predict(frame)  # doctest: +SKIP
    """
    if (Path(path) / ENSEMBLE_FILE).exists():
        return EnsembleRun(path)
    return Run(path)
