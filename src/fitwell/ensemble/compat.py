"""Work-arounds for bugs in the libraries behind fitwell's ensemble members, each with the version
it was seen in and what it does, so that it can go once the library fixes it."""

from __future__ import annotations

import numpy as np


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
