"""Temperature scaling (Guo et al. 2017): one scalar T fitted on validation logits by minimising
the negative log-likelihood; probabilities become softmax(logits / T). Accuracy is unchanged."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def nll(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), target.float())
    return F.cross_entropy(logits, target)


def fit_temperature(task: str, logits: np.ndarray, target: np.ndarray, steps: int = 200) -> float:
    """The T > 0 that minimises validation NLL of ``logits / T``.

    Example:
        >>> fit_temperature("multiclass", np.array([[9.0, 0.0], [9.0, 0.0]]), np.array([0, 1])) > 1
        True
    """
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(target)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays > 0
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nll(task, x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


class _GivenProbabilities:
    """A fitted "classifier" whose input is already a probability matrix: lets scikit-learn's
    CalibratedClassifierCV learn a mapping from any member's probabilities, out-of-fold ones
    included, not only from one fitted estimator's."""

    _estimator_type = "classifier"

    def __init__(self, num_classes: int):
        self.classes_ = np.arange(num_classes)

    def fit(self, X, y=None):
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)

    def predict(self, X):
        return self.classes_[np.asarray(X).argmax(axis=1)]

    def get_params(self, deep=True):
        return {"num_classes": len(self.classes_)}

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags())


def fit_probability_calibrator(method: str, probabilities: np.ndarray, target: np.ndarray):
    """Isotonic or sigmoid (Platt) calibration of a probability matrix, fitted on held-out rows
    with scikit-learn's CalibratedClassifierCV (one-vs-rest and renormalised for multiclass).

    Returns:
        A fitted calibrator; ``calibrator.predict_proba(probabilities)`` maps any rows.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]] * 10)
        >>> y = np.array([0, 1, 1, 0] * 10)
        >>> fit_probability_calibrator("isotonic", p, y).predict_proba(p).shape
        (40, 2)
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    frozen = FrozenEstimator(_GivenProbabilities(probabilities.shape[1]))
    return CalibratedClassifierCV(frozen, method=method).fit(probabilities, target)
