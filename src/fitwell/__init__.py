"""fitwell: train models the way best practice says they should be trained.

Example:
    >>> import fitwell
    >>> run = fitwell.train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
    >>> run.metrics["accuracy"], run.predict(frame)  # doctest: +SKIP
"""

from importlib import import_module

from fitwell.errors import ConfigError, DataError, UserError

__version__ = "0.1.0"
__all__ = ["Callback", "Classifier", "fit", "ConfigError", "DataError", "Regressor",
           "Run", "RunConfig", "UserError", "load_config", "load_run", "privacy_audit",
           "train", "__version__"]

# Heavy modules (torch, scikit-learn) load on first use, so `fitwell --help` stays quick.
_LAZY = {"train": "fitwell.api", "fit": "fitwell.api", "privacy_audit": "fitwell.api",
         "Callback": "fitwell.engine",
         "Classifier": "fitwell.estimators", "Regressor": "fitwell.estimators",
         "Run": "fitwell.serve", "load_run": "fitwell.serve",
         "RunConfig": "fitwell.config", "load_config": "fitwell.config"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fitwell' has no attribute {name!r}")
