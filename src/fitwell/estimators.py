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
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fitwell.data.tensors import TensorData
from fitwell.engine.callbacks import EarlyStopping
from fitwell.engine.loop import Trainer
from fitwell.engine.losses import build_loss
from fitwell.engine.optim import build_optimizer
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
    def _fit(self, X, target: np.ndarray, task: str, out_features: int, sample_weight):
        seed = 0 if self.random_state is None else int(self.random_state)
        torch.manual_seed(seed)
        if sample_weight is not None:  # shape, finiteness, >= 0, not all zero: scikit-learn's checks
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        self.preprocess_ = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                         StandardScaler())
        numeric = self.preprocess_.fit_transform(X).astype(np.float32)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        rows = np.arange(len(numeric))
        use_val = self.early_stopping and len(rows) >= 20
        if use_val:
            can = task != "regression" and _can_stratify(target, self.validation_fraction)
            stratify = target if can else None
            train_rows, val_rows = train_test_split(rows, test_size=self.validation_fraction,
                                                    random_state=seed, stratify=stratify)
        else:
            train_rows, val_rows = rows, rows[:0]
        self.model_ = MLP(numeric.shape[1], [], out_features, hidden_sizes=list(self.hidden_sizes),
                          activation=self.activation, dropout=self.dropout, batch_norm=self.batch_norm)
        optimizer = build_optimizer(self.optimizer, self.model_, self.lr, self.weight_decay)
        callbacks = [EarlyStopping("val_loss", "min", self.patience)] if use_val else []
        trainer = Trainer(self.model_, build_loss("auto", task), optimizer, task=task,
                          epochs=self.epochs, batch_size=min(self.batch_size, max(2, len(train_rows))),
                          seed=seed, callbacks=callbacks, decode=self._decode)
        codes = np.zeros((len(numeric), 0), dtype=np.int64)

        def part(index):
            return TensorData.from_numpy(numeric[index], codes[index], target[index],
                                         None if weight is None else weight[index])

        state = trainer.fit(part(train_rows), part(val_rows) if use_val else None)
        self.n_iter_ = state.epoch
        self.model_.eval()
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


def _can_stratify(y, share) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= 2 and share * len(y) >= len(counts)


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
