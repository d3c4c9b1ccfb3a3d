"""Ensemble members as scikit-learn estimators, so scikit-learn's own machinery wraps them.

A fitwell member is the run's model trained by fitwell's Trainer on the packed ``nn`` view (see
features.py); it honours ``sample_weight`` through the loss, which is what AdaBoost needs. Bagging
is scikit-learn's BaggingClassifier/Regressor, boosting its AdaBoostClassifier/Regressor, gradient
boosting LightGBM or HistGradientBoosting, and any other estimator comes by ``module:Class``.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from fitwell.config.schema import RunConfig
from fitwell.config.search import MemberConfig
from fitwell.ensemble.boosting import BOOSTING_KINDS, BoostedTreesClassifier, BoostedTreesRegressor
from fitwell.ensemble.features import unpack
from fitwell.errors import ConfigError
from fitwell.evaluate.metrics import probabilities
from fitwell.models import MODELS, model_arguments
from fitwell.models.build import add_number_bins
from fitwell.models.registry import rebuild_model, recorded_arguments

TREE_KINDS = (*BOOSTING_KINDS, "hist_gradient_boosting")


class _FitwellMember(BaseEstimator):
    """The run's fitwell model as a scikit-learn estimator over the packed ``nn`` view.

    Args:
        config: the run config as JSON-ready dict (member overrides already applied).
        num_numeric: leading columns of X that are numbers; the rest are category codes.
        cardinalities: embedding sizes of the code columns.
        num_classes: classes of the whole task (0 for regression); every copy predicts all of them,
            so bagged copies that miss a class still line up.
        validation_fraction: rows held out of ``fit`` for early stopping.
        random_state: seed of the model's initialisation, the shuffling and the held-out rows.
    """

    def __init__(self, config: dict | None = None, num_numeric: int = 0, cardinalities=(),
                 num_classes: int = 0, validation_fraction: float = 0.1, random_state: int = 0):
        self.config = config
        self.num_numeric = num_numeric
        self.cardinalities = cardinalities
        self.num_classes = num_classes
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    @property
    def _task(self) -> str:
        return "regression" if self.num_classes == 0 else "binary" if self.num_classes == 2 else "multiclass"

    def fit(self, X, y, sample_weight=None):

        from fitwell.config.resolve import replace_values
        from fitwell.engine.build import fit_arrays

        if self.config is None:
            raise ConfigError("a fitwell ensemble member needs its run config")
        config = replace_values(RunConfig.model_validate(self.config),
                                {"train.progress": False, "seed": int(self.random_state)})
        task = self._task
        numeric, codes = unpack(X, self.num_numeric)
        target = np.asarray(y).astype(np.float32 if task == "regression" else np.int64)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        out = 1 if task in ("binary", "regression") else self.num_classes
        kwargs = model_arguments(config.model.name, config.model.model_dump(exclude={"name"}))
        kwargs.update(num_numeric=self.num_numeric, cardinalities=list(self.cardinalities), out_features=out)
        add_number_bins(kwargs, torch.from_numpy(numeric))
        kwargs = recorded_arguments(config.model.name, kwargs)
        self.model_spec_ = {"name": config.model.name, "kwargs": kwargs}
        torch.manual_seed(config.seed)
        model = MODELS.build(config.model.name, key="model.name", **kwargs)
        self.model_, state = fit_arrays(config, model, task, numeric, codes, target, weight,
                                        num_classes=self.num_classes,
                                        validation_fraction=self.validation_fraction)
        self.n_iter_ = state.epoch
        if task != "regression":
            self.classes_ = np.arange(self.num_classes)
        return self

    def _raw(self, X) -> np.ndarray:
        numeric, codes = unpack(X, self.num_numeric)
        with torch.inference_mode():
            out = self.model_(torch.from_numpy(numeric), torch.from_numpy(codes))
        return out.float().numpy()

    # skops stores plain data: the weights go as numpy arrays and the module is rebuilt on load
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if "model_" in state:
            state["model_"] = {k: v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        weights = state.pop("model_", None)
        self.__dict__.update(state)
        if weights is not None:
            spec = self.model_spec_
            self.model_ = rebuild_model(spec)
            self.model_.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()},
                                        strict=True)
            self.model_.eval()


class FitwellMemberClassifier(ClassifierMixin, _FitwellMember):
    def predict_proba(self, X):
        return probabilities(self._task, self._raw(X))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class FitwellMemberRegressor(RegressorMixin, _FitwellMember):
    def predict(self, X):
        return self._raw(X).reshape(-1)


def _imported(spec: MemberConfig, classify: bool, task: str, seed: int, where: str) -> BaseEstimator:
    """A ``module:Class`` scikit-learn estimator, checked against the task."""
    from fitwell.engine.losses import import_object

    cls = import_object(spec.estimator, f"{where} {spec.name!r} estimator")
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise ConfigError(f"{where} {spec.name!r}: estimator {spec.estimator!r} is not a scikit-learn"
                          " estimator class")
    params = dict(spec.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)
    estimator = _construct(cls, params, spec, where)
    kind = getattr(estimator, "_estimator_type", None) or ("classifier" if hasattr(
        estimator, "predict_proba") else "regressor")
    if classify and not hasattr(estimator, "predict_proba"):
        raise ConfigError(f"{where} {spec.name!r}: {spec.estimator} has no predict_proba; a"
                          " classification ensemble combines probabilities (use a probabilistic"
                          " classifier)")
    if classify != (kind == "classifier"):
        raise ConfigError(f"{where} {spec.name!r}: {spec.estimator} is a {kind} but the task is {task}")
    return estimator


def build_member(spec: MemberConfig, base: RunConfig, task: str, num_numeric: int, cardinalities: list[int],
                 num_classes: int, tree_categorical: list[int], seed: int,
                 validation_fraction: float = 0.1, where: str = "ensemble.members",
                 deadline: float | None = None) -> BaseEstimator:
    """The scikit-learn estimator a member spec describes (unfitted). ``deadline`` (a
    ``time.monotonic()`` reading) stops a boosted-tree member adding trees once it passes.

    Raises:
        ConfigError: unknown estimator, bad params or overrides; the message names the member key.
    """
    classify = task != "regression"
    if spec.kind == "fitwell":
        from fitwell.config.load import load_config

        source = base.model_dump(mode="json", exclude={"tune", "ensemble"})
        try:
            config = load_config(source, spec.overrides)
        except ConfigError as err:
            raise ConfigError(f"{where} {spec.name!r} overrides: {err}") from err
        cls = FitwellMemberClassifier if classify else FitwellMemberRegressor
        estimator = cls(config.model_dump(mode="json"), num_numeric, list(cardinalities),
                        num_classes if classify else 0, validation_fraction, seed)
    elif spec.kind in BOOSTING_KINDS:
        estimator = _boosted(spec, classify, tree_categorical, seed, validation_fraction, deadline, where)
    elif spec.kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor

        from fitwell.ensemble import compat

        compat.allow_columns_without_values()  # a fold's rows may hold no value of a sparse column
        cls = compat.HistGradientBoostingClassifierForRareClasses
        cls = cls if classify else HistGradientBoostingRegressor
        params = {"random_state": seed, **spec.params}
        if spec.early_stopping:
            params = {"early_stopping": True, "n_iter_no_change": spec.early_stopping,
                      "validation_fraction": validation_fraction, **params}
        if tree_categorical and "categorical_features" not in params:
            params["categorical_features"] = tree_categorical
        estimator = _construct(cls, params, spec, where)
        if deadline is not None and not spec.bagging and not spec.boosting:
            estimator = TimeBoxed(estimator, deadline)
    else:
        estimator = _imported(spec, classify, task, seed, where)
    if spec.bagging:
        from sklearn.ensemble import BaggingClassifier, BaggingRegressor

        cls = BaggingClassifier if classify else BaggingRegressor
        estimator = cls(estimator=estimator, n_estimators=spec.bagging, random_state=seed)
    elif spec.boosting:
        from sklearn.ensemble import AdaBoostClassifier, AdaBoostRegressor

        if classify and "sample_weight" not in inspect.signature(estimator.fit).parameters:
            raise ConfigError(f"{where} {spec.name!r}: boosting needs an estimator whose fit takes"
                              " sample_weight")
        cls = AdaBoostClassifier if classify else AdaBoostRegressor
        estimator = cls(estimator=estimator, n_estimators=spec.boosting, random_state=seed)
    if spec.calibration != "none" and not classify:
        raise ConfigError(f"{where} {spec.name!r}: calibration is for classifiers; the task is regression")
    return estimator


class TimeBoxed(BaseEstimator):
    """A HistGradientBoosting model that stops adding trees at a ``deadline`` (a
    ``time.monotonic()`` reading), as the LightGBM/XGBoost/CatBoost members do: it is fitted in
    rounds of ``chunk`` iterations with scikit-learn's ``warm_start`` -- the same trees a single fit
    grows (a seeded model keeps its early-stopping split), ending at ``max_iter``, at early stopping,
    or after the round in which the deadline passed; once the first round's pace says the rest ends
    well before the deadline, the rest is one round. ``estimator_`` is the fitted model.

    Example:
        >>> from sklearn.ensemble import HistGradientBoostingRegressor
        >>> X = np.arange(200.0).reshape(-1, 1)
        >>> boxed = TimeBoxed(HistGradientBoostingRegressor(max_iter=50), deadline=0.0).fit(X, X[:, 0])
        >>> boxed.estimator_.n_iter_  # past the deadline already: one round
        25
    """

    def __init__(self, estimator=None, deadline: float | None = None, chunk: int = 25):
        self.estimator = estimator
        self.deadline = deadline
        self.chunk = chunk

    def fit(self, X, y, sample_weight=None):
        import time

        from sklearn.base import clone

        model = clone(self.estimator)
        target = model.max_iter
        model.set_params(warm_start=True, max_iter=min(self.chunk, target))
        while True:
            started = time.monotonic()
            done = model.n_iter_ if hasattr(model, "n_iter_") else 0
            model.fit(X, y, sample_weight=sample_weight)
            stopped = model.n_iter_ < model.max_iter or _stops_early(model)
            now = time.monotonic()
            if stopped or model.max_iter >= target or (self.deadline is not None and now >= self.deadline):
                break
            # the rest in one round when, at this round's pace, it ends well before the deadline
            # (each round re-bins the rows and re-predicts the trees so far: rounds are not free)
            pace = (now - started) / max(model.n_iter_ - done, 1)
            rest = target - model.n_iter_
            whole = self.deadline is None or now + 1.5 * pace * rest < self.deadline
            model.set_params(max_iter=target if whole else min(model.max_iter + self.chunk, target))
        model.set_params(warm_start=False, max_iter=target)
        self.estimator_ = model
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_
        return self

    def predict(self, X):
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def __sklearn_tags__(self):  # a classifier or regressor as the model it boxes
        return self.estimator.__sklearn_tags__() if self.estimator is not None else super().__sklearn_tags__()


def _stops_early(model) -> bool:
    """Whether scikit-learn's early-stopping rule holds after the last tree: a round that ends on
    the very tree where a single fit would stop cannot tell by ``n_iter_``, and a warm start would
    grow past it."""
    if not getattr(model, "do_early_stopping_", False):
        return False
    scores = model.validation_score_ if len(model.validation_score_) else model.train_score_
    return bool(model._should_stop(list(scores)))


def _boosted(spec: MemberConfig, classify: bool, categorical: list[int], seed: int, fraction: float,
             deadline: float | None, where: str):
    """A LightGBM, XGBoost or CatBoost member; its params are checked by building the library's
    estimator once now (a misspelt CatBoost argument is named here, not after the other members)."""
    from fitwell.ensemble.boosting import library_estimator

    try:
        library_estimator(spec.kind, classify, dict(spec.params), categorical, 0, seed, 1)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} {spec.name!r} params: {err}") from err
    cls = BoostedTreesClassifier if classify else BoostedTreesRegressor
    return cls(spec.kind, dict(spec.params), list(categorical), spec.early_stopping, fraction, seed, deadline)


def _construct(cls, params: dict, spec: MemberConfig, where: str):
    try:
        estimator = cls(**params)
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()  # scikit-learn's own check: wrong types named now, not at fit
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} {spec.name!r} params: {err}") from err
    return estimator


class FoldBag(BaseEstimator):
    """k-fold bagging's final model: the k models fitted on k-1 folds each, whose out-of-fold
    predictions scored the member; a prediction is their mean (``ensemble.final: bag``).

    Example:
        >>> from sklearn.linear_model import LinearRegression
        >>> X = np.arange(8.0).reshape(-1, 1)
        >>> bag = FoldBag([LinearRegression().fit(X, 2 * X[:, 0]), LinearRegression().fit(X, 4 * X[:, 0])])
        >>> bag.predict(np.array([[1.0]])).round(6).tolist()
        [3.0]
    """

    def __init__(self, estimators=(), num_classes: int = 0):
        self.estimators = list(estimators)
        self.num_classes = num_classes
        if num_classes:
            self.classes_ = np.arange(num_classes)

    def predict(self, X) -> np.ndarray:
        if self.num_classes:
            return self.predict_proba(X).argmax(axis=1)
        return np.mean([np.asarray(e.predict(X), dtype=np.float64) for e in self.estimators], axis=0)

    def predict_proba(self, X) -> np.ndarray:
        return np.mean([aligned_proba(e, e.predict_proba(X), self.num_classes) for e in self.estimators],
                       axis=0)


def aligned_proba(estimator, proba: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities in columns 0..num_classes-1 even when a fold's model saw only some classes."""
    proba = np.asarray(proba, dtype=np.float64)
    return spread_columns(proba, getattr(estimator, "classes_", np.arange(proba.shape[1])), num_classes)


def spread_columns(proba: np.ndarray, classes, num_classes: int) -> np.ndarray:
    """Columns of ``classes`` (the codes a model saw, in its column order) put in columns
    0..num_classes-1; 0 for a class it never saw."""
    classes = np.asarray(classes).astype(int)
    if proba.shape[1] == num_classes and (classes == np.arange(num_classes)).all():
        return proba
    out = np.zeros((len(proba), num_classes))
    out[:, classes] = proba
    return out
