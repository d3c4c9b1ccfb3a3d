"""Using a trained run: load any run directory, batch prediction and evaluation; the REST server
(``server``), ONNX export (``export``) and drift monitoring (``monitor``) are imported on use."""

from fitwell.serve.bundle import load_run
from fitwell.track.bundle import Run

__all__ = ["Run", "load_run"]
