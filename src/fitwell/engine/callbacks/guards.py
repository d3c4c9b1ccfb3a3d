"""Callbacks that end training early for safety: non-finite values, time and step budgets."""

from __future__ import annotations

import math
import time

import torch

from fitwell.engine.callbacks.base import Callback


def first_non_finite(module: torch.nn.Module) -> str | None:
    """Name of the first parameter (or its gradient) holding NaN or Inf, if any."""
    for name, param in module.named_parameters():
        if not torch.isfinite(param).all():
            return f"parameter {name}"
        if param.grad is not None and not torch.isfinite(param.grad).all():
            return f"gradient of {name}"
    return None


class NanGuard(Callback):
    """Stop at the first non-finite loss; say which step and which tensor; keep the last good
    checkpoint (the checkpoint writer writes nothing once ``state.diverged`` is set).

    On a CPU the loss is checked after every batch (a check costs about a microsecond); on an
    accelerator every ``every_n_steps`` batches, since each check waits for the device.
    """

    order = -10
    stops_alike = True  # on several processes it reads the whole batch's loss, the same on every rank

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def on_fit_start(self, trainer, state):
        self._every = 1 if trainer.device.type == "cpu" else self.every_n_steps

    def on_batch_end(self, trainer, state):
        if state.batch_in_epoch % self._every and state.batch_in_epoch < state.batches_per_epoch:
            return
        loss = float(state.last_loss)
        if math.isfinite(loss):
            return
        culprit = first_non_finite(trainer.module) or "the loss itself (inputs or targets?)"
        state.diverged = True
        state.should_stop = True
        state.stop_reason = (
            f"non-finite loss ({loss}) at step {state.step}, epoch {state.epoch + 1}, batch"
            f" {state.batch_in_epoch}; first non-finite tensor: {culprit}. Training stopped; the last"
            " good checkpoint is kept. Try a lower train.lr, train.clip_grad_norm, or check the data"
        )


    def on_validation_end(self, trainer, state, metrics):
        loss = metrics.get("val_loss")
        if loss is None or math.isfinite(loss) or state.diverged:
            return
        state.diverged = True
        state.should_stop = True
        state.stop_reason = (
            f"validation outputs are not finite (val_loss {loss}) after epoch {state.epoch}; the weights"
            " have blown up although the training loss was still a number. Training stopped; the last"
            " good checkpoint is kept. Try a lower train.lr or train.clip_grad_norm=1.0")


class Budget(Callback):
    """Stop after ``max_time`` seconds or ``max_steps`` optimizer steps (checked every batch).

    ``started_at`` (a ``time.monotonic()`` reading) counts the time from the run's start -- data,
    audit and preprocessing included -- instead of from the first epoch, and ``reserve`` (a share
    of ``max_time``) is left for what follows training: scoring, the report, the manifest.
    """

    stops_alike = True  # steps are counted alike; on several processes the ranks agree on the clock

    def __init__(self, max_time: float | None = None, max_steps: int | None = None,
                 started_at: float | None = None, reserve: float = 0.0):
        self.max_time, self.max_steps = max_time, max_steps
        self.started_at, self.reserve = started_at, reserve

    def on_fit_start(self, trainer, state):
        origin = time.monotonic() if self.started_at is None else self.started_at
        self._deadline = origin + self.max_time * (1 - self.reserve) if self.max_time else None

    def on_batch_end(self, trainer, state):
        if self.max_steps is not None and state.step >= self.max_steps:
            state.should_stop = True
            state.stop_reason = f"step budget reached: {state.step} optimizer steps (train.max_steps)"
        elif self._deadline is not None and self._over_time(trainer, state):
            state.should_stop = True
            state.stop_reason = f"time budget reached: {self.max_time:g} s (train.max_time)"

    def _over_time(self, trainer, state) -> bool:
        world = getattr(trainer, "world", None)
        if world is None:
            return time.monotonic() >= self._deadline
        if state.batch_in_epoch % 8 and state.batch_in_epoch < state.batches_per_epoch:
            return False  # several processes ask each other every 8 batches: all stop at the same one
        return world.agree(time.monotonic() >= self._deadline)[0]
