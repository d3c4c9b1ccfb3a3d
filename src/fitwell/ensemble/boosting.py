"""Gradient-boosted tree members: LightGBM, XGBoost and CatBoost behind one scikit-learn estimator.

Each library's own way is used for what it does well: categories are split on natively (LightGBM's
``categorical_feature``, XGBoost's ``feature_types`` ``"c"`` columns, CatBoost's ``cat_features``),
missing numbers go down the learned missing branch, and early stopping watches a held-out share of
the rows given to ``fit`` (stratified for classifiers) -- never the rows the out-of-fold prediction
is made on. A ``deadline`` (a ``time.monotonic()`` reading) stops adding trees once it passes, so a
time-limited ensemble ends a member cleanly with the trees it has instead of running over.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

BOOSTING_KINDS = ("lightgbm", "xgboost", "catboost")

# What each library is told besides the user's params: quiet, seeded, on the free cores; CatBoost
# would otherwise write a catboost_info/ folder into the working directory.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {"verbose": -1},
    "xgboost": {"tree_method": "hist", "enable_categorical": True, "verbosity": 0},
    "catboost": {"verbose": 0, "allow_writing_files": False},
}
_SEED_KEY = {"lightgbm": "random_state", "xgboost": "random_state", "catboost": "random_seed"}
_THREADS_KEY = {"lightgbm": "n_jobs", "xgboost": "n_jobs", "catboost": "thread_count"}


def estimator_class(kind: str, classify: bool):
    """The library's scikit-learn class for ``kind``; a clear error when the package is missing."""
    from fitwell.errors import ConfigError

    module, names = {"lightgbm": ("lightgbm", ("LGBMClassifier", "LGBMRegressor")),
                     "xgboost": ("xgboost", ("XGBClassifier", "XGBRegressor")),
                     "catboost": ("catboost", ("CatBoostClassifier", "CatBoostRegressor"))}[kind]
    try:
        library = __import__(module)
    except ImportError as err:  # dependencies; only a broken install lacks them
        raise ConfigError(f"ensemble member kind {kind} needs the {module} package (pip install"
                          f" {'xgboost-cpu' if kind == 'xgboost' else module})") from err
    return getattr(library, names[0] if classify else names[1])


def library_estimator(kind: str, classify: bool, params: dict, categorical: list[int], num_columns: int,
                      seed: int, threads: int):
    """The library's estimator with fitwell's defaults under the user's ``params``."""
    values = {**_DEFAULTS[kind], _SEED_KEY[kind]: seed, _THREADS_KEY[kind]: threads, **params}
    if kind == "xgboost" and categorical and num_columns:
        chosen = set(categorical)
        values.setdefault("feature_types", ["c" if i in chosen else "q" for i in range(num_columns)])
    if kind == "catboost" and categorical:
        values.setdefault("cat_features", list(categorical))
    return estimator_class(kind, classify)(**values)


class _BoostedTrees(BaseEstimator):
    """One gradient-boosting library's model on the ``tree`` view (numbers with NaN, category codes).

    Args:
        kind: lightgbm, xgboost or catboost.
        params: the library's constructor arguments (they win over fitwell's defaults).
        categorical: column indices holding category codes (NaN = missing or unseen).
        early_stopping: > 0: stop after that many rounds without improvement on the held-out rows.
        validation_fraction: share of the rows given to ``fit`` held out for early stopping.
        random_state: seed of the library and of the held-out rows.
        deadline: a ``time.monotonic()`` reading after which no more trees are added.
        threads: the library's threads for fitting (None: the free cores); a thread count in
            ``params`` wins.
    """

    threads: int | None = None  # models saved before this parameter existed load without it

    def __init__(self, kind: str = "lightgbm", params: dict | None = None, categorical=(),
                 early_stopping: int = 0, validation_fraction: float = 0.1, random_state: int = 0,
                 deadline: float | None = None, threads: int | None = None):
        self.kind = kind
        self.params = params
        self.categorical = categorical
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.deadline = deadline
        self.threads = threads

    def fit(self, X, y, sample_weight=None):
        from fitwell.engine.threads import free_cores

        X, y = self.library_rows(X), np.asarray(y)
        classify = isinstance(self, ClassifierMixin)
        if classify:  # codes 0..k-1 of the classes present (XGBoost needs them contiguous)
            self.classes_, y = np.unique(y, return_inverse=True)
        model = library_estimator(self.kind, classify, dict(self.params or {}), list(self.categorical),
                                  X.shape[1], int(self.random_state), self.threads or free_cores())
        fit_rows, held = held_out(len(y), y if classify else None, self.early_stopping,
                                   self.validation_fraction, self.random_state)
        weight = None if sample_weight is None else np.asarray(sample_weight)
        kwargs = self._fit_arguments(model, X, y, weight, held)
        model.fit(_take(X, fit_rows), y[fit_rows],
                  **({} if weight is None else {"sample_weight": weight[fit_rows]}), **kwargs)
        if self.kind == "xgboost":
            model.set_params(callbacks=None, early_stopping_rounds=None)  # plain data for skops
        self.estimator_ = model
        if self.kind == "catboost" and len(self.categorical):  # ONNX export probes their combinations
            self.category_rows_ = np.unique(X[list(self.categorical)].to_numpy(np.int64), axis=0)
        self.n_iter_ = _trees(model, self.kind)
        return self

    def _fit_arguments(self, model, X, y, weight, held) -> dict:
        """The library's keyword arguments for early stopping on ``held`` and the deadline."""
        kwargs: dict[str, Any] = {}
        stop = _Deadline(self.deadline) if self.deadline is not None else None
        if held is not None:
            kwargs["eval_set"] = [(_take(X, held), y[held])]
            if weight is not None and self.kind != "catboost":
                kwargs["sample_weight_eval_set" if self.kind == "xgboost" else "eval_sample_weight"] = \
                    [weight[held]]
        if self.kind == "lightgbm":
            import lightgbm

            if self.categorical and "categorical_feature" not in (self.params or {}):
                kwargs["categorical_feature"] = list(self.categorical)
            if held is not None and "eval_X" in inspect.signature(model.fit).parameters:  # LightGBM >= 4.6
                (eval_x, eval_y), = kwargs.pop("eval_set")
                kwargs.update(eval_X=(eval_x,), eval_y=(eval_y,))
            callbacks = [lightgbm.early_stopping(self.early_stopping, verbose=False)] if held is not None \
                else []
            kwargs["callbacks"] = callbacks + ([stop.lightgbm] if stop else [])
        elif self.kind == "xgboost":
            model.set_params(early_stopping_rounds=self.early_stopping if held is not None else None,
                             callbacks=[stop.xgboost()] if stop else None)
            if held is not None:
                kwargs["verbose"] = False
        else:  # catboost
            if held is not None:
                kwargs["early_stopping_rounds"] = self.early_stopping
            if stop:
                kwargs["callbacks"] = [stop]
        return kwargs

    def library_rows(self, X) -> np.ndarray:
        """``X`` as the library is given it (CatBoost: a frame, category codes as integers)."""
        X = np.asarray(X, dtype=np.float64)
        if self.kind == "catboost" and len(self.categorical):
            # CatBoost takes category values as integers or strings, not NaN: missing is its own -1
            import pandas as pd

            frame = pd.DataFrame(X)
            for column in self.categorical:
                frame[column] = frame[column].fillna(-1).astype(np.int64)
            return frame
        return X

    def _predict(self, X, method: str) -> np.ndarray:
        return getattr(self.estimator_, method)(self.library_rows(X))


class BoostedTreesClassifier(ClassifierMixin, _BoostedTrees):
    def predict_proba(self, X) -> np.ndarray:
        return np.asarray(self._predict(X, "predict_proba"), dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class BoostedTreesRegressor(RegressorMixin, _BoostedTrees):
    def predict(self, X) -> np.ndarray:
        return np.asarray(self._predict(X, "predict"), dtype=np.float64).reshape(-1)


def _take(X, rows):
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def held_out(rows: int, labels, rounds: int, fraction: float, seed: int):
    """(rows to fit, rows held out for early stopping or None); stratified when every class has two
    rows and the held-out part can hold one of each. Every class keeps a row to fit: a class whose
    rows all fell in the held-out part was unknown to the model (a 17-class run's fold model
    answered 16 columns, a real table with 13 classes of one or two rows)."""
    if not rounds or rows < 20:
        return np.arange(rows), None
    from sklearn.model_selection import train_test_split

    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        if counts[counts > 0].min() >= 2 and np.ceil(fraction * rows) >= (counts > 0).sum():
            stratify = labels
    fit_rows, held = train_test_split(np.arange(rows), test_size=fraction, random_state=seed,
                                      stratify=stratify)
    if labels is not None:
        alone = ~np.isin(labels[held], labels[fit_rows])
        fit_rows, held = np.concatenate([fit_rows, held[alone]]), held[~alone]
    return np.sort(fit_rows), (np.sort(held) if len(held) else None)


def _trees(model, kind: str) -> int:
    """Boosting rounds the fitted model keeps (after early stopping)."""
    if kind == "lightgbm":
        return int(model.best_iteration_ or model.n_estimators_)
    if kind == "xgboost":
        best = getattr(model, "best_iteration", None)
        return int(best + 1) if best is not None else int(model.get_booster().num_boosted_rounds())
    return int(model.tree_count_)


class _Deadline:
    """Stops a library's boosting loop once ``time.monotonic()`` passes ``at``."""

    def __init__(self, at: float):
        self.at = at

    def lightgbm(self, env) -> None:
        if time.monotonic() > self.at:
            import lightgbm

            raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    def xgboost(self):
        import xgboost

        at = self.at

        class Stop(xgboost.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log) -> bool:
                return time.monotonic() > at

        return Stop()

    def after_iteration(self, info) -> bool:  # CatBoost: False stops training
        return time.monotonic() <= self.at
