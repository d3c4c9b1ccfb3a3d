"""Using a trained run: batch prediction and evaluation."""

from fitwell.serve.bundle import Run, load_run

__all__ = ["Run", "load_run"]
