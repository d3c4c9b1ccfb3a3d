"""Optimizers by name, with biases and normalisation weights kept out of weight decay."""

from __future__ import annotations

import torch
from torch import nn

from fitwell.registry import OPTIMIZERS


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights that decay, and biases / norm / 1-d parameters that do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9, nesterov: bool = False) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters.

    Example:
        >>> build_optimizer("sgd", nn.Linear(2, 1), lr=0.1).defaults["momentum"]
        0.9
    """
    factory = OPTIMIZERS.get(name, "train.optimizer")
    return factory(parameter_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


@OPTIMIZERS.register("sgd")
def sgd(groups, lr, momentum, nesterov):
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def fused(groups) -> bool:
    """Whether PyTorch's fused Adam kernel can step these parameters (floating point, on the CPU
    or a CUDA device). On a CPU torch's default Adam steps one tensor at a time in Python: 111 us
    a step on a 20-64-64-1 MLP against 31 us fused (docs/benchmarks.md, "Session 14")."""
    params = [p for group in groups for p in group["params"]]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


@OPTIMIZERS.register("adam")
def adam(groups, lr, momentum, nesterov):
    return torch.optim.Adam(groups, lr=lr, fused=fused(groups))


@OPTIMIZERS.register("adamw")
def adamw(groups, lr, momentum, nesterov):
    return torch.optim.AdamW(groups, lr=lr, fused=fused(groups))


@OPTIMIZERS.register("rmsprop")
def rmsprop(groups, lr, momentum, nesterov):
    return torch.optim.RMSprop(groups, lr=lr, momentum=momentum)


@OPTIMIZERS.register("adagrad")
def adagrad(groups, lr, momentum, nesterov):
    return torch.optim.Adagrad(groups, lr=lr)
