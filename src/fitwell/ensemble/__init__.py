"""Ensembles of fitwell models and gradient-boosted trees: bagging, boosting, stacking, voting."""

from fitwell.ensemble.build import fit_ensemble
from fitwell.ensemble.model import EnsembleModel, EnsembleRun

__all__ = ["EnsembleModel", "EnsembleRun", "fit_ensemble"]
