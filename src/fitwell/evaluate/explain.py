"""Permutation feature importance (scikit-learn's ``permutation_importance``) of a finished run,
on raw input columns: each column is shuffled before preprocessing, so a one-hot encoded or
embedded category counts as one feature."""

from __future__ import annotations

import numpy as np
import pandas as pd


class _RunAdapter:
    """The two methods permutation_importance's scorer calls, over a fitwell Run."""

    def __init__(self, run):
        self.run = run

    def fit(self, X, y=None):
        """Never called: scikit-learn's parameter validation only requires that it exists."""
        return self


def permutation_importance(run, frame: pd.DataFrame, repeats: int = 5, seed: int = 0) -> dict:
    """Mean and std drop of the run's main test metric when each input column is shuffled.

    The metric is ROC AUC (binary), accuracy (multiclass) or R2 (regression); higher is better,
    so a larger drop means a more important column.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    target = run.preprocessor.plan.target
    columns = run.preprocessor.plan.inputs
    labelled = frame.loc[frame[target].notna()]
    metric = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}[run.task]

    def score(adapter, X, y):
        value = adapter.run.evaluate(X.assign(**{target: y.to_numpy()}))[metric]
        return value if np.isfinite(value) else 0.0

    result = sk_permutation_importance(_RunAdapter(run), labelled[columns], labelled[target],
                                       scoring=score, n_repeats=repeats, random_state=seed)
    order = np.argsort(-result.importances_mean)
    return {"metric": metric, "repeats": repeats, "rows": len(labelled),
            "importances": [{"column": columns[i], "mean": float(result.importances_mean[i]),
                             "std": float(result.importances_std[i])} for i in order]}
