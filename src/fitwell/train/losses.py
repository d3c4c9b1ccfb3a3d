"""Losses by task, with optional class weights; every loss maps (logits, target) -> scalar."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fitwell.errors import ConfigError

CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")
REGRESSION_LOSSES = ("mse", "mae", "huber")


def default_loss(task: str) -> str:
    return {"binary": "binary_cross_entropy", "multiclass": "cross_entropy"}.get(task, "mse")


class BinaryCrossEntropy(nn.Module):
    """BCE on one logit; class weights give a weighted mean, as CrossEntropyLoss does."""

    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.squeeze(-1)
        if self.class_weights is None:
            return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
        per_row = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
        weight = self.class_weights[target]
        return (per_row * weight).sum() / weight.sum()


class CrossEntropy(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.class_weights)


class Regression(nn.Module):
    """MSE, MAE or Huber on a single output."""

    def __init__(self, kind: str, delta: float = 1.0):
        super().__init__()
        self.kind, self.delta = kind, delta

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output = output.squeeze(-1)
        if self.kind == "mse":
            return F.mse_loss(output, target)
        if self.kind == "mae":
            return F.l1_loss(output, target)
        return F.huber_loss(output, target, delta=self.delta)


def build_loss(name: str, task: str, class_weights: torch.Tensor | None = None,
               huber_delta: float = 1.0) -> nn.Module:
    """The loss module for ``task``; ``name="auto"`` picks the task's usual one.

    Raises:
        ConfigError: the loss does not fit the task (``train.loss`` named).
    """
    name = default_loss(task) if name == "auto" else name
    if task == "regression":
        if name not in REGRESSION_LOSSES:
            raise ConfigError(
                f"train.loss: {name!r} does not fit a regression task;"
                f" use one of {', '.join(REGRESSION_LOSSES)}"
            )
        return Regression(name, huber_delta)
    expected = "binary_cross_entropy" if task == "binary" else "cross_entropy"
    if name != expected:
        raise ConfigError(f"train.loss: {name!r} does not fit a {task} task; use {expected!r} (or auto)")
    return BinaryCrossEntropy(class_weights) if task == "binary" else CrossEntropy(class_weights)
