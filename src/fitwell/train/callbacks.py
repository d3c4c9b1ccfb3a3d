"""Callbacks: a base with no-op hooks, and the ones every run uses."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fitwell.train.checkpoint import BackgroundWriter

if TYPE_CHECKING:
    from fitwell.train.loop import Trainer, TrainState


class Callback:
    """Override the hooks you need; return nothing; stop with ``state.should_stop = True``.

    State returned by ``state_dict`` rides in the checkpoint and comes back through
    ``load_state_dict`` on resume. ``order`` sorts callbacks (the checkpoint writer runs last).
    """

    order = 0

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_batch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_validation_end(self, trainer: Trainer, state: TrainState, metrics: dict) -> None: ...
    def on_exception(self, trainer: Trainer, state: TrainState, error: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def is_improvement(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True if ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; restore the best weights.

    Example:
        >>> EarlyStopping("val_loss", mode="min", patience=5)  # doctest: +ELLIPSIS
        <...EarlyStopping...>
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best

    def on_fit_start(self, trainer, state):
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: dict | None = None
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer, state, metrics):
        value = metrics.get(self.monitor)
        if is_improvement(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.should_stop = True
            self.stopped_epoch = state.epoch
            state.stop_reason = (f"early stopping: {self.monitor} did not improve on {self.best:.5g}"
                                 f" (epoch {self.best_epoch}) for {self.patience} epochs")

    def on_fit_end(self, trainer, state):
        if self.restore_best and self.best_weights is not None:
            trainer.module.load_state_dict(self.best_weights)
            state.best_epoch = self.best_epoch

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights, self.stopped_epoch = state["best_weights"], state["stopped_epoch"]


class CheckpointWriter(Callback):
    """Write the resume checkpoint every ``every`` epochs and at the end, on a worker thread."""

    order = 100

    def __init__(self, folder: Path, every: int = 1):
        self.folder, self.every = Path(folder), every
        self._writer = BackgroundWriter()

    def on_epoch_end(self, trainer, state):
        last = state.epoch >= trainer.epochs
        if state.epoch % self.every == 0 or state.should_stop or last:
            self._writer.submit(trainer.checkpoint_state(state), self.folder)

    def on_fit_end(self, trainer, state):
        self._writer.wait()

    def on_exception(self, trainer, state, error):
        self._writer.wait()


class MetricsLogger(Callback):
    """One JSON line per epoch in ``path``; on resume the file is rewritten from the checkpoint."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_fit_start(self, trainer, state):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(row) + "\n" for row in state.history))

    def on_epoch_end(self, trainer, state):
        with open(self.path, "a") as handle:
            handle.write(json.dumps(state.history[-1]) + "\n")


class ProgressBar(Callback):
    """A Rich bar over epochs showing the training loss and the monitored metric."""

    order = 50

    def __init__(self, monitor: str | None = None, console=None):
        self.monitor, self.console = monitor, console

    def on_fit_start(self, trainer, state):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = self.console or Console(file=sys.stderr)
        self.progress = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.task = self.progress.add_task("", total=trainer.epochs, completed=state.epoch)
        self.progress.start()

    def on_epoch_end(self, trainer, state):
        row = state.history[-1]
        text = f"train_loss {row['train_loss']:.4f}"
        if self.monitor and self.monitor in row and self.monitor != "train_loss":
            text += f"  {self.monitor} {row[self.monitor]:.4f}"
        self.progress.update(self.task, completed=state.epoch, description=text)

    def on_fit_end(self, trainer, state):
        self.progress.stop()

    def on_exception(self, trainer, state, error):
        self.progress.stop()
