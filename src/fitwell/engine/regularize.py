"""Penalties added to the loss (as opposed to the optimizer's decoupled weight decay)."""

from __future__ import annotations

import torch
from torch import nn


def penalised_parameters(module: nn.Module) -> list[torch.Tensor]:
    """Weight matrices and embeddings; biases and normalisation parameters are not penalised."""
    return [p for name, p in module.named_parameters()
            if p.requires_grad and p.ndim >= 2 and not name.endswith(".bias")]


class WeightPenalty:
    """``l1 * sum |w| + l2 * sum w**2`` over the penalised weights (elastic net when both > 0).

    Example:
        >>> penalty = WeightPenalty(nn.Linear(2, 1, bias=False), l1=0.0, l2=1.0)
        >>> float(penalty()) >= 0
        True
    """

    def __init__(self, module: nn.Module, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = l1, l2
        self.params = penalised_parameters(module)

    def __bool__(self) -> bool:
        return bool(self.l1 or self.l2) and bool(self.params)

    def __call__(self) -> torch.Tensor:
        total = 0.0
        if self.l1:
            total = total + self.l1 * sum(p.abs().sum() for p in self.params)
        if self.l2:
            total = total + self.l2 * sum(p.pow(2).sum() for p in self.params)
        return total
