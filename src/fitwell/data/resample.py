"""Rebalance the classes of the training split (imbalanced-learn), after preprocessing, so
synthetic rows are interpolated in the model's input space and validation and test rows are
never touched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError

if TYPE_CHECKING:
    from fitwell.config.schema import ResampleConfig


def build_sampler(config: ResampleConfig, num_numeric: int, num_codes: int, num_classes: int, seed: int):
    """The imbalanced-learn sampler ``train.resample`` names, suited to the input blocks: SMOTE
    on numbers only, SMOTE-NC with coded categories, SMOTE-N when there are only categories."""
    try:
        import imblearn  # noqa: F401
    except ImportError as err:  # a dependency; only a broken install lands here
        raise ConfigError("train.resample needs imbalanced-learn: pip install imbalanced-learn") from err
    from imblearn import combine, over_sampling, under_sampling

    if config.ratio != "auto" and num_classes > 2:
        raise ConfigError(f"train.resample.ratio: a number ({config.ratio}) only works with two classes;"
                          f" this task has {num_classes}. Use ratio: auto (balance every class)")
    strategy = config.ratio
    categorical = list(range(num_numeric, num_numeric + num_codes))

    def smote():
        k = config.k_neighbors
        if not categorical:
            return over_sampling.SMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed)
        if num_numeric == 0:
            return over_sampling.SMOTEN(sampling_strategy=strategy, k_neighbors=k, random_state=seed)
        return over_sampling.SMOTENC(categorical_features=categorical, sampling_strategy=strategy,
                                     k_neighbors=k, random_state=seed)

    method = config.method
    if method == "random_over":
        return over_sampling.RandomOverSampler(sampling_strategy=strategy, random_state=seed)
    if method == "random_under":
        return under_sampling.RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
    if method == "smote":
        return smote()
    if method == "adasyn":
        if categorical:
            raise ConfigError("train.resample.method: adasyn interpolates numbers only, and this table has"
                              " categorical columns; use smote (SMOTE-NC) instead")
        return over_sampling.ADASYN(sampling_strategy=strategy, n_neighbors=config.k_neighbors,
                                    random_state=seed)
    if method == "smote_tomek":
        return combine.SMOTETomek(smote=smote(), random_state=seed)
    return combine.SMOTEENN(smote=smote(), random_state=seed)


def resample_training(data: TensorData, config: ResampleConfig, task: str, classes: list,
                      seed: int) -> tuple[TensorData, dict]:
    """Resample the training tensors; return them and a report of the class counts before and after.

    Example:
        >>> from fitwell.config.schema import ResampleConfig
        >>> y = np.r_[np.zeros(90), np.ones(10)].astype(np.int64)
        >>> data = TensorData.from_numpy(np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32),
        ...                              np.zeros((100, 0), np.int64), y)
        >>> out, report = resample_training(data, ResampleConfig(method="smote"), "binary", [0, 1], 0)
        >>> report["after"]
        {'0': 90, '1': 90}

    Raises:
        ConfigError: a regression task, row weights with a synthetic method, or a bad ratio.
    """
    if task == "regression":
        raise ConfigError("train.resample rebalances classes; this is a regression task. Remove"
                          " train.resample (or set data.task if the target is really a class)")
    synthetic = config.method not in ("random_over", "random_under")
    if data.inputs and synthetic:
        raise ConfigError(f"train.resample.method: {config.method} interpolates table rows; this data has"
                          f" {', '.join(data.inputs)} input, so use random_over or random_under")
    if data.weight is not None and synthetic:
        raise ConfigError(f"train.resample.method: {config.method} makes synthetic rows, which have no"
                          " row weight (data.weight_column); use random_over or random_under")
    numeric, codes = data.numeric.numpy(), data.codes.numpy()
    y = data.target.numpy()
    before = _counts(y, classes)
    smallest = min(v for v in before.values() if v)
    if synthetic and smallest <= config.k_neighbors:
        raise ConfigError(f"train.resample.k_neighbors: the smallest class has {smallest} training rows;"
                          f" SMOTE needs more than k_neighbors ({config.k_neighbors}). Lower it, or use"
                          " method: random_over")
    sampler = build_sampler(config, numeric.shape[1], codes.shape[1], len(classes), seed)
    X = np.hstack([numeric.astype(np.float64), codes.astype(np.float64)])
    if X.shape[1] == 0:  # image/text/sequence only: random samplers pick rows, so any column will do
        X = np.zeros((len(y), 1))
    try:
        X_new, y_new = sampler.fit_resample(X, y)
    except ValueError as err:
        raise ConfigError(f"train.resample: {config.method} failed on the training split: {err}") from err
    n = numeric.shape[1]
    weight = None
    if data.weight is not None:
        weight = data.weight.numpy()[sampler.sample_indices_]
    inputs = {k: v.numpy()[sampler.sample_indices_] for k, v in data.inputs.items()} if data.inputs else None
    out = TensorData.from_numpy(np.ascontiguousarray(X_new[:, :n], dtype=np.float32),
                                np.ascontiguousarray(np.rint(X_new[:, n:n + codes.shape[1]]), dtype=np.int64),
                                np.ascontiguousarray(y_new, dtype=y.dtype), weight, inputs)
    after = _counts(y_new, classes)
    return out, {"method": config.method, "ratio": config.ratio, "split": "train", "before": before,
                 "after": after, "rows_before": int(len(y)), "rows_after": int(len(y_new))}


def _counts(y: np.ndarray, classes: list) -> dict[str, int]:
    found = np.bincount(y.astype(np.int64), minlength=len(classes))
    return {str(c): int(found[i]) for i, c in enumerate(classes)}
