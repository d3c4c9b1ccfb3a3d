"""The callback base class and the pure rule every monitoring callback shares."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitwell.engine.loop import Trainer, TrainState


class Callback:
    """Override the hooks you need; stop training with ``state.should_stop = True``.

    State returned by ``state_dict`` rides in the checkpoint and comes back through
    ``load_state_dict`` on resume; reset any state in ``on_fit_start`` so the object is reusable.
    ``order`` sorts callbacks (lower first; the checkpoint writer runs last). A callback with a
    ``monitor`` attribute is checked at start: the metric must be one the loop logs. On several
    processes every rank runs every callback except those with ``rank_zero_only`` (the ones that
    write files or print): rank 0 alone runs them -- unless it sets ``every_rank_when_sharded`` and
    the network is sharded (FSDP), where what it reads is split over the ranks (the gradient
    monitor sums its norms from every rank's shards). A callback whose ``on_batch_end`` stops training
    is asked after every batch whether any rank stopped (a collective) unless it declares
    ``stops_alike``: that it decides the same on every rank.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, state):
        ...         print(state.epoch, state.history[-1]["train_loss"])
    """

    order = 0
    rank_zero_only = False

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_batch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_before_optimizer_step(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_validation_end(self, trainer: Trainer, state: TrainState, metrics: dict) -> None: ...
    def on_exception(self, trainer: Trainer, state: TrainState, error: BaseException) -> None: ...

    def uses_hook(self, hook: str) -> bool:
        """Whether the loop must call ``hook``; per-batch hooks cost a call every step, so a
        callback whose batch hook would do nothing in this configuration can say no."""
        return overrides(self, hook)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def overrides(callback: Callback, hook: str) -> bool:
    """True if ``callback``'s class implements ``hook`` (so the loop must call it)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def is_improvement(value: float | None, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True if ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
