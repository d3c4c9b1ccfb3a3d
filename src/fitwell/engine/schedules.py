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

from fitwell.registry import SCHEDULES


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
    if config.name == "none":
        return None
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    built = SCHEDULES.get(config.name, "train.schedule.name")(config, optimizer, steps_per_epoch, total,
                                                               warmup, base_lr)
    if isinstance(built, Schedule):
        return built
    if warmup <= 0:  # a smooth schedule stepped per batch, after an optional linear warmup
        return Schedule(built, "batch")
    ramp = sched.LinearLR(optimizer, start_factor=config.warmup_start, end_factor=1.0, total_iters=warmup)
    return Schedule(sched.SequentialLR(optimizer, [ramp, built], milestones=[warmup]), "batch")


@SCHEDULES.register("none")
def _none(*_):
    return None


@SCHEDULES.register("step")
def _step(config, optimizer, *_):
    return Schedule(sched.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), "epoch")


@SCHEDULES.register("multistep")
def _multistep(config, optimizer, *_):
    return Schedule(sched.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma), "epoch")


@SCHEDULES.register("exponential")
def _exponential(config, optimizer, *_):
    return Schedule(sched.ExponentialLR(optimizer, gamma=config.gamma), "epoch")


@SCHEDULES.register("plateau")
def _plateau(config, optimizer, *_):
    return Schedule(sched.ReduceLROnPlateau(optimizer, mode=config.resolved_mode, factor=config.gamma,
                                            patience=config.patience, min_lr=config.min_lr),
                    "plateau", config.monitor)


@SCHEDULES.register("onecycle")
def _onecycle(config, optimizer, steps_per_epoch, total, warmup, base_lr):
    peak = config.max_lr or base_lr  # per group, so backbone/head rate ratios survive
    peaks = [peak * group["lr"] / base_lr for group in optimizer.param_groups]
    return Schedule(sched.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=config.pct_start,
                                     anneal_strategy="cos"), "batch")


@SCHEDULES.register("cosine")
def _cosine(config, optimizer, steps_per_epoch, total, warmup, base_lr):
    return sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=config.min_lr)


@SCHEDULES.register("cosine_restarts")
def _cosine_restarts(config, optimizer, steps_per_epoch, total, warmup, base_lr):
    cycle = max(1, config.restart_epochs * steps_per_epoch)
    return sched.CosineAnnealingWarmRestarts(optimizer, T_0=cycle, T_mult=config.restart_mult,
                                             eta_min=config.min_lr)


@SCHEDULES.register("linear")
def _linear(config, optimizer, steps_per_epoch, total, warmup, base_lr):
    end = config.min_lr / base_lr if base_lr > 0 else 0.0  # linear decay to min_lr
    return sched.LinearLR(optimizer, start_factor=1.0, end_factor=end, total_iters=max(1, total - warmup))
