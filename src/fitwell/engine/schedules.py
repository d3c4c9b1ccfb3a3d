"""Learning-rate schedules by name, built from ``torch.optim.lr_scheduler``.

Smooth schedules (cosine, cosine with restarts, one-cycle, linear, any warmup) step after every
optimizer step; step, multi-step and exponential step once per epoch; reduce-on-plateau steps
per epoch on a monitored metric. All take their lengths in epochs, converted to optimizer steps
where they step per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler as sched

PER_BATCH = ("cosine", "cosine_restarts", "onecycle", "linear")
PER_EPOCH = ("step", "multistep", "exponential", "plateau")
SCHEDULES = ("none", *PER_BATCH, *PER_EPOCH)


@dataclass
class Schedule:
    """A torch scheduler plus when to step it: "batch", "epoch" or "plateau"."""

    scheduler: object
    interval: str
    monitor: str | None = None

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(config, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                   base_lr: float) -> Schedule | None:
    """The configured schedule (``train.schedule``), or None for a constant rate.

    Example:
        >>> opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
        >>> from fitwell.config import TrainConfig
        >>> cfg = TrainConfig(schedule={"name": "step", "step_size": 2}).schedule
        >>> build_schedule(cfg, opt, steps_per_epoch=10, epochs=5, base_lr=0.1).interval
        'epoch'
    """
    name = config.name
    if name == "none":
        return None
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if name == "step":
        return Schedule(sched.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), "epoch")
    if name == "multistep":
        return Schedule(sched.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma),
                        "epoch")
    if name == "exponential":
        return Schedule(sched.ExponentialLR(optimizer, gamma=config.gamma), "epoch")
    if name == "plateau":
        return Schedule(sched.ReduceLROnPlateau(optimizer, mode=config.resolved_mode, factor=config.gamma,
                                                patience=config.patience, min_lr=config.min_lr),
                        "plateau", config.monitor)
    if name == "onecycle":
        peak = config.max_lr or base_lr  # per group, so backbone/head rate ratios survive
        peaks = [peak * group["lr"] / base_lr for group in optimizer.param_groups]
        return Schedule(sched.OneCycleLR(optimizer, max_lr=peaks, total_steps=total,
                                         pct_start=config.pct_start, anneal_strategy="cos"), "batch")
    if name == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=config.min_lr)
    elif name == "cosine_restarts":
        cycle = max(1, config.restart_epochs * steps_per_epoch)
        main = sched.CosineAnnealingWarmRestarts(optimizer, T_0=cycle, T_mult=config.restart_mult,
                                                 eta_min=config.min_lr)
    else:  # linear decay to min_lr
        end = config.min_lr / base_lr if base_lr > 0 else 0.0
        main = sched.LinearLR(optimizer, start_factor=1.0, end_factor=end, total_iters=max(1, total - warmup))
    if warmup <= 0:
        return Schedule(main, "batch")
    ramp = sched.LinearLR(optimizer, start_factor=config.warmup_start, end_factor=1.0, total_iters=warmup)
    return Schedule(sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup]), "batch")
