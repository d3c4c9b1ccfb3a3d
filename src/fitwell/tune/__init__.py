"""Hyperparameter search with Optuna from the config's ``tune`` section."""

from fitwell.tune.study import tune

__all__ = ["tune"]
