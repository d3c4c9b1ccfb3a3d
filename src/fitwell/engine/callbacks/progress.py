"""Callbacks that report: the Rich progress bar and the JSON-lines metric logger."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from fitwell.engine.callbacks.base import Callback


class MetricsLogger(Callback):
    """One JSON line per epoch in ``path``; on resume the file is rewritten from the checkpoint."""

    order = 80  # after the monitors have added their values to the row
    rank_zero_only = True

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
    rank_zero_only = True

    def __init__(self, monitor: str | None = None, console=None):
        self.monitor, self.console = monitor, console

    def on_fit_start(self, trainer, state):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = self.console or Console(file=sys.stderr)
        # no refresh thread: it would take the GIL from the training loop ten times a second
        self.progress = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=False, auto_refresh=False)
        self.task = self.progress.add_task("", total=trainer.epochs, completed=state.epoch)
        self.progress.start()
        self._shown = -math.inf  # time.monotonic() of the last redraw

    def on_epoch_end(self, trainer, state):
        row = state.history[-1]
        text = f"train_loss {row['train_loss']:.4f}"
        if self.monitor and self.monitor in row and self.monitor != "train_loss":
            value = row[self.monitor]
            text += f"  {self.monitor} {value:.4f}" if not math.isnan(value) else ""
        self.progress.update(self.task, completed=state.epoch, description=text)
        now = time.monotonic()
        if now - self._shown >= 0.1:  # at most ten redraws a second (epochs of milliseconds); stop
            self.progress.refresh()  # draws the last state whatever this skipped
            self._shown = now

    def on_fit_end(self, trainer, state):
        self.progress.stop()

    def on_exception(self, trainer, state, error):
        self.progress.stop()
