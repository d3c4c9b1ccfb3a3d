"""Work-arounds for bugs in the libraries behind fitwell's ensemble members, each with the version
it was seen in and what it does, so that it can go once the library fixes it."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier


def allow_columns_without_values() -> None:
    """scikit-learn 1.9's HistGradientBoosting fails ("window shape cannot be larger than input
    array shape") on a column with no value in the rows it is fitted on: a column missing in every
    training row of a fold, or of the whole training split (seen on ``mosaicData/HELPfull``, 788
    mostly empty columns). Its binning gives a column of one value no thresholds; a column of none
    now gets the same (every row goes to the missing-values bin: it can never be split on). Once,
    idempotent; fits of columns that have values are unchanged."""
    from sklearn.ensemble._hist_gradient_boosting import binning

    found = binning._find_binning_thresholds
    if getattr(found, "allows_columns_without_values", False):
        return

    def thresholds(col_data, max_bins, sample_weight=None):
        kept = ~np.isnan(col_data)
        if sample_weight is not None:
            kept &= np.asarray(sample_weight) != 0
        if not kept.any():
            return np.asarray([])
        return found(col_data, max_bins, sample_weight)

    thresholds.allows_columns_without_values = True
    binning._find_binning_thresholds = thresholds


class HistGradientBoostingClassifierForRareClasses(HistGradientBoostingClassifier):
    """scikit-learn 1.9's HistGradientBoostingClassifier holds out its early-stopping rows by a
    stratified split, which fails on a class of one row ("The least populated classes in y have
    only 1 member"; seen on ``openintro/duke_forest``'s ``parking``: 13 of 19 classes with one or
    two rows). Such a fit gets the held-out rows the LightGBM/XGBoost/CatBoost members use (every
    class keeps a row to fit) as ``X_val``/``y_val``; every other fit is scikit-learn's own."""

    def fit(self, X, y, sample_weight=None, **kwargs):
        from fitwell.ensemble.boosting import held_out

        y = np.asarray(y)
        codes = np.unique(y, return_inverse=True)[1]
        stops = self.early_stopping is True or (self.early_stopping == "auto" and len(y) > 10_000)
        if kwargs or not stops or self.validation_fraction is None or np.bincount(codes).min() >= 2:
            return super().fit(X, y, sample_weight=sample_weight, **kwargs)
        fraction = self.validation_fraction
        fraction = fraction / len(y) if fraction >= 1 else fraction  # scikit-learn's: a count or a share
        seed = self.random_state if isinstance(self.random_state, int) else 0
        fit_rows, held = held_out(len(y), codes, 1, fraction, seed)
        if held is None:
            return super().fit(X, y, sample_weight=sample_weight)
        rows = (lambda part: X.iloc[part]) if hasattr(X, "iloc") else (lambda part: np.asarray(X)[part])
        weights = (None, None) if sample_weight is None else \
            (np.asarray(sample_weight)[fit_rows], np.asarray(sample_weight)[held])
        return super().fit(rows(fit_rows), y[fit_rows], sample_weight=weights[0], X_val=rows(held),
                           y_val=y[held], sample_weight_val=weights[1])
