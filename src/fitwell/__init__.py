"""fitwell: train models the way best practice says they should be trained.

Example:
    >>> import fitwell
    >>> run = fitwell.train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
    >>> run.metrics["accuracy"], run.predict(frame)  # doctest: +SKIP
"""

from fitwell.config import RunConfig, load_config
from fitwell.errors import ConfigError, DataError, UserError
from fitwell.pipeline import train
from fitwell.serve import Run, load_run

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "Run", "RunConfig", "UserError", "load_config", "load_run",
           "train", "__version__"]
