"""Losses: ``loss(output, target, weight=None) -> scalar``.

Every built-in loss takes optional per-row sample weights and fixed class weights; a weighted
loss is the weighted mean (sum of w * loss over sum of w), as ``nn.CrossEntropyLoss`` does for
class weights. Unweighted calls take PyTorch's fused kernels.
"""

from __future__ import annotations

import importlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from fitwell.errors import ConfigError
from fitwell.registry import LOSSES

CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy", "focal")
REGRESSION_LOSSES = ("mse", "mae", "huber")


def default_loss(task: str) -> str:
    return {"binary": "binary_cross_entropy", "multiclass": "cross_entropy"}.get(task, "mse")


def weighted_mean(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


class Loss(nn.Module):
    """Base: per-row loss, then the (class x sample) weighted mean.

    A 3-d output ``(rows, heads, out)`` (an ensembling family such as TabM, in training) is read as
    ``heads`` predictions of every row: each head gets its own loss, and the loss is their mean.
    """

    def __call__(self, output, target, weight=None):
        if output.ndim == 3:
            rows, heads = output.shape[:2]
            output = output.reshape(rows * heads, -1)
            target = target.repeat_interleave(heads)
            weight = None if weight is None else weight.repeat_interleave(heads)
        if weight is None:
            return super().__call__(output, target)
        return super().__call__(output, target, weight)

    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self._rows = False

    def per_row(self, output, target, weight=None) -> torch.Tensor:
        """Each row's (weighted) loss, unreduced: what per-row gradient clipping needs (a private
        run); an ensembling family's heads are averaged per row."""
        heads = output.shape[1] if output.ndim == 3 else 1
        self._rows = True  # each loss takes its unfused, per-row branch
        try:
            out = self(output, target, weight)
        finally:
            self._rows = False
        return out.reshape(len(target), heads).mean(1) if heads > 1 else out

    def reduce(self, per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        if self._rows:
            return per_row if weight is None else per_row * weight
        return weighted_mean(per_row, weight)

    def row_weight(self, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor | None:
        if self.class_weights is not None:
            cw = self.class_weights[target]
            weight = cw if weight is None else cw * weight
        return weight


class BinaryCrossEntropy(Loss):
    """BCE on one logit; ``label_smoothing`` moves targets to eps/2 and 1 - eps/2."""

    def __init__(self, class_weights=None, label_smoothing: float = 0.0):
        super().__init__(class_weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits, target, weight=None):
        logits = logits.squeeze(-1)
        soft = target.to(logits.dtype)
        if self.label_smoothing:
            soft = soft * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        weight = self.row_weight(target, weight)
        if weight is None and not self._rows:
            return F.binary_cross_entropy_with_logits(logits, soft)
        return self.reduce(F.binary_cross_entropy_with_logits(logits, soft, reduction="none"), weight)


class CrossEntropy(Loss):
    def __init__(self, class_weights=None, label_smoothing: float = 0.0):
        super().__init__(class_weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits, target, weight=None):
        if weight is None and not self._rows:
            return F.cross_entropy(logits, target, weight=self.class_weights,
                                   label_smoothing=self.label_smoothing)
        per_row = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        return self.reduce(per_row, self.row_weight(target, weight))


class FocalLoss(Loss):
    """Focal loss (Lin et al. 2017): ``-(1 - p_t) ** gamma * log(p_t)``, binary or multiclass.

    Class weights play the part of the paper's alpha.
    """

    def __init__(self, binary: bool, gamma: float = 2.0, class_weights=None):
        super().__init__(class_weights)
        self.binary, self.gamma = binary, gamma

    def forward(self, logits, target, weight=None):
        if self.binary:
            logits = logits.squeeze(-1)
            log_p1 = F.logsigmoid(logits)
            log_p0 = F.logsigmoid(-logits)
            log_pt = torch.where(target.bool(), log_p1, log_p0)
        else:
            log_pt = F.log_softmax(logits, dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
        per_row = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        return self.reduce(per_row, self.row_weight(target, weight))


class Regression(Loss):
    """MSE, MAE or Huber on a single output."""

    def __init__(self, kind: str, delta: float = 1.0):
        super().__init__(None)
        self.kind, self.delta = kind, delta

    def forward(self, output, target, weight=None):
        output = output.squeeze(-1)
        reduction = "mean" if weight is None and not self._rows else "none"
        if self.kind == "mse":
            out = F.mse_loss(output, target, reduction=reduction)
        elif self.kind == "mae":
            out = F.l1_loss(output, target, reduction=reduction)
        else:
            out = F.huber_loss(output, target, delta=self.delta, reduction=reduction)
        return out if reduction == "mean" else self.reduce(out, weight)


class CustomLoss(nn.Module):
    """A user function ``f(output, target[, weight])`` named as 'module:function'."""

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec
        self.function = import_object(spec, "train.loss")
        self.takes_weight = "weight" in inspect.signature(self.function).parameters

    def forward(self, output, target, weight=None):
        if weight is not None and self.takes_weight:
            return self.function(output, target, weight=weight)
        if weight is not None:
            raise ConfigError(f"train.loss: {self.spec} takes no 'weight' argument, but sample or class"
                              " weights are set; add a weight=None parameter to it")
        return self.function(output, target)


def import_object(spec: str, key: str):
    """Import 'package.module:Name' and return Name, or raise ConfigError naming ``key``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{key}: {spec!r} is not of the form 'module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{key}: cannot import module {module_name!r} ({err}); is it on PYTHONPATH?") from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ConfigError(f"{key}: module {module_name!r} has no {attr!r}") from err


def build_loss(name: str, task: str, class_weights: torch.Tensor | None = None,
               huber_delta: float = 1.0, focal_gamma: float = 2.0,
               label_smoothing: float = 0.0) -> nn.Module:
    """The loss module for ``task``; ``name="auto"`` picks the task's usual one.

    Raises:
        ConfigError: the loss does not fit the task (``train.loss`` named).
    """
    if ":" in name:
        return CustomLoss(name)
    name = default_loss(task) if name == "auto" else name
    fits = [n for n in LOSSES.names() if task in getattr(LOSSES.get(n), "tasks", ())]
    factory = LOSSES.get(name, "train.loss")
    if task not in getattr(factory, "tasks", ()):
        raise ConfigError(f"train.loss: {name!r} does not fit a {task} task; use one of {', '.join(fits)}"
                          " (or auto)")
    return factory(task=task, class_weights=class_weights, huber_delta=huber_delta, focal_gamma=focal_gamma,
                   label_smoothing=label_smoothing)


def _loss(name: str, *tasks: str):
    """Register a loss factory for the tasks it fits (``auto`` is resolved before the registry)."""
    def add(factory):
        factory.tasks = tasks
        return LOSSES.register(name)(factory)

    return add


@_loss("binary_cross_entropy", "binary")
def _binary_cross_entropy(task, class_weights, label_smoothing, **_):
    return BinaryCrossEntropy(class_weights, label_smoothing)


@_loss("cross_entropy", "multiclass")
def _cross_entropy(task, class_weights, label_smoothing, **_):
    return CrossEntropy(class_weights, label_smoothing)


@_loss("focal", "binary", "multiclass")
def _focal(task, class_weights, focal_gamma, **_):
    return FocalLoss(task == "binary", focal_gamma, class_weights)


@_loss("mse", "regression")
def _mse(task, huber_delta, **_):
    return Regression("mse", huber_delta)


@_loss("mae", "regression")
def _mae(task, huber_delta, **_):
    return Regression("mae", huber_delta)


@_loss("huber", "regression")
def _huber(task, huber_delta, **_):
    return Regression("huber", huber_delta)


@_loss("auto", "binary", "multiclass", "regression")
def _auto(task, **settings):
    return build_loss(default_loss(task), task, **settings)
