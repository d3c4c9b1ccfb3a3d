"""scikit-learn estimators: ``fitwell.Classifier`` and ``fitwell.Regressor``.

They take numeric arrays or DataFrames as scikit-learn estimators do (``validate_data``: no
column-type inference, no dropped columns), impute and scale with scikit-learn, and train
fitwell's MLP with fitwell's Trainer (early stopping on an internal validation share, sample
weights through the loss). Nothing is written to disk. Constructor arguments are the config keys
of the same names (``lr`` is ``train.lr``, ``hidden_sizes`` is ``model.hidden_sizes``).

Example:
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> Classifier(epochs=50, random_state=0).fit(X, y).score(X, y) > 0.9
    True
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fitwell.config.resolve import replace_values
from fitwell.config.schema import RunConfig
from fitwell.engine.build import fit_arrays
from fitwell.evaluate.metrics import probabilities
from fitwell.models.mlp import MLP


class _FitwellEstimator(BaseEstimator):
    _task_kind = "classification"

    def __init__(self, hidden_sizes=(64, 32), activation="relu", dropout=0.0, batch_norm=False,
                 epochs=100, batch_size=32, lr=3e-3, weight_decay=0.0, optimizer="adamw",
                 early_stopping=True, patience=10, validation_fraction=0.1, random_state=None):
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # imputed
        tags.non_deterministic = self.random_state is None
        return tags

    # --- shared fitting ----------------------------------------------------------------------
    def run_config(self) -> RunConfig:
        """The run config these constructor arguments are (``lr`` is ``train.lr`` and so on)."""
        seed = 0 if self.random_state is None else int(self.random_state)
        return RunConfig.model_validate({
            "seed": seed,
            "model": {"name": "mlp", "hidden_sizes": list(self.hidden_sizes), "activation": self.activation,
                      "dropout": self.dropout, "batch_norm": self.batch_norm},
            "train": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                      "weight_decay": self.weight_decay, "optimizer": self.optimizer, "progress": False,
                      "early_stopping": {"enabled": bool(self.early_stopping), "patience": self.patience,
                                         "monitor": "val_loss"}}})

    def _fit(self, X, target: np.ndarray, task: str, out_features: int, sample_weight):
        config = self.run_config()
        if sample_weight is not None:  # shape, finiteness, >= 0, not all zero: scikit-learn's checks
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        self.preprocess_ = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                         StandardScaler())
        numeric = self.preprocess_.fit_transform(X).astype(np.float32)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        # a batch never larger than the training rows (tiny fits in scikit-learn's checks)
        batch_size = min(self.batch_size, max(2, len(numeric) - 1))
        config = replace_values(config, {"train.batch_size": batch_size})
        torch.manual_seed(config.seed)  # the initial weights too: two fits give the same model
        self.model_ = MLP(numeric.shape[1], [], out_features, hidden_sizes=list(self.hidden_sizes),
                          activation=self.activation, dropout=self.dropout, batch_norm=self.batch_norm)
        codes = np.zeros((len(numeric), 0), dtype=np.int64)
        self.model_, state = fit_arrays(config, self.model_, task, numeric, codes, target, weight,
                                        num_classes=out_features if task == "multiclass" else 2,
                                        validation_fraction=self.validation_fraction, decode=self._decode)
        self.n_iter_ = state.epoch
        return self

    def _decode(self, values):
        return values

    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        numeric = self.preprocess_.transform(X).astype(np.float32)
        with torch.inference_mode():
            codes = torch.zeros((len(numeric), 0), dtype=torch.long)
            out = self.model_(torch.from_numpy(numeric), codes)
        return out.float().numpy()


class Classifier(ClassifierMixin, _FitwellEstimator):
    """A fitwell MLP classifier with the scikit-learn API (see the module docstring)."""

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", ensure_min_samples=2)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"Classifier needs samples of at least 2 classes in the data; got 1 class"
                             f" ({self.classes_[0]!r})")  # scikit-learn's wording, its checks match it
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        self._task = task
        out = 1 if task == "binary" else len(self.classes_)
        return self._fit(X, encoded.astype(np.int64), task, out, sample_weight)

    def predict_proba(self, X):
        check_is_fitted(self, "model_")
        return probabilities(self._task, self._raw(X))

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[proba.argmax(axis=1)]


class Regressor(RegressorMixin, _FitwellEstimator):
    """A fitwell MLP regressor with the scikit-learn API; the target is standardised for training."""

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", ensure_min_samples=2,
                             y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.target_mean_, self.target_std_ = float(y.mean()), float(y.std()) or 1.0
        scaled = ((y - self.target_mean_) / self.target_std_).astype(np.float32)
        return self._fit(X, scaled, "regression", 1, sample_weight)

    def _decode(self, values):
        return values * getattr(self, "target_std_", 1.0) + getattr(self, "target_mean_", 0.0)

    def predict(self, X):
        return self._decode(self._raw(X).reshape(-1))
