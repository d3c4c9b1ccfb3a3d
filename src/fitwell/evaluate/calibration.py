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
