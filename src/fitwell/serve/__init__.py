"""Using a trained run: load any run directory, batch prediction and evaluation."""

from fitwell.serve.bundle import load_run
from fitwell.track.bundle import Run

__all__ = ["Run", "load_run"]
