"""Checkpoints: the resume checkpoint (everything, atomic, background) and top-k best weights."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from fitwell.engine.callbacks.base import Callback, is_improvement, overrides
from fitwell.engine.checkpoint import BackgroundWriter


class CheckpointWriter(Callback):
    """Write the resume checkpoint every ``every`` epochs (and every ``every_steps`` optimizer
    steps, for mid-epoch resume) and at the end, on a worker thread. Nothing is written once
    training has diverged, so the last checkpoint is always a good one.

    ``max_overhead`` bounds what checkpoints cost: an epoch's checkpoint is skipped while the last
    one's cost (the snapshot here plus the write on the worker thread) is more than that share of
    the time since it. Epochs of a few milliseconds then checkpoint every so often instead of every
    epoch (2% at most of the time, and a crash loses at most cost / max_overhead seconds of
    training); epochs of seconds still checkpoint every one. The last epoch and a stop always write.
    """

    order = 100
    rank_zero_only = True
    stops_alike = True  # never stops

    def __init__(self, folder: Path, every: int = 1, every_steps: int | None = None,
                 max_overhead: float = 0.0):
        self.folder, self.every, self.every_steps = Path(folder), every, every_steps
        self.max_overhead = max_overhead
        self._writer = BackgroundWriter()
        self._written_at: float | None = None  # time.perf_counter() when the last one was taken
        self._cost = 0.0

    def on_epoch_end(self, trainer, state):
        import time

        last = state.epoch >= trainer.epochs
        if state.diverged:
            return
        if not (state.epoch % self.every == 0 or state.should_stop or last):
            return
        now = time.perf_counter()
        if (self.max_overhead and not (state.should_stop or last) and self._written_at is not None
                and self._cost + self._writer.last_seconds > self.max_overhead * (now - self._written_at)):
            return
        self._writer.submit(trainer.checkpoint_state(state), self.folder)
        self._written_at, self._cost = now, time.perf_counter() - now

    def uses_hook(self, hook: str) -> bool:
        if hook == "on_batch_end":  # off the hot path unless mid-epoch checkpoints are asked for
            return self.every_steps is not None
        return overrides(self, hook)

    def on_batch_end(self, trainer, state):
        if (self.every_steps and state.at_step_boundary and state.step % self.every_steps == 0
                and not state.diverged and state.batch_in_epoch < state.batches_per_epoch):
            self._writer.submit(trainer.checkpoint_state(state), self.folder)

    def on_fit_end(self, trainer, state):
        self._writer.wait()

    def on_exception(self, trainer, state, error):
        self._writer.wait()

    def wait(self) -> None:
        self._writer.wait()


class ModelCheckpoint(Callback):
    """Keep the ``save_top_k`` best weight files by ``monitor`` (and optionally the last).

    Files go to ``folder/epoch=<E>-<monitor>=<value>.safetensors``; a file is written only every
    ``every_n_epochs`` epochs. ``save_top_k: -1`` keeps every one.

    Example:
        >>> ModelCheckpoint("runs/x/weights", monitor="val_loss", save_top_k=3).save_top_k
        3
    """

    order = 90
    rank_zero_only = True

    def __init__(self, folder: str | Path = "weights", monitor: str = "val_loss", mode: str = "auto",
                 save_top_k: int = 1, every_n_epochs: int = 1, save_last: bool = False):
        from fitwell.config.schema import resolve_mode

        self.folder, self.monitor = Path(folder), monitor
        self.mode = resolve_mode(mode, monitor)
        self.save_top_k, self.every_n_epochs, self.save_last = save_top_k, every_n_epochs, save_last
        self.kept: list[tuple[float, str]] = []

    def on_fit_start(self, trainer, state):
        if not self.folder.is_absolute() and trainer.run_dir is not None:
            self.folder = Path(trainer.run_dir) / self.folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kept = []

    def _worst(self) -> tuple[float, str]:
        return (max if self.mode == "min" else min)(self.kept)

    def on_validation_end(self, trainer, state, metrics):
        if state.epoch % self.every_n_epochs:
            return
        weights = {k: v.detach().cpu().contiguous() for k, v in trainer.eval_module.state_dict().items()}
        if self.save_last:
            _save(weights, self.folder / "last.safetensors")
        value = metrics.get(self.monitor)
        if self.save_top_k == 0 or value is None:
            return
        full = self.save_top_k > 0 and len(self.kept) >= self.save_top_k
        if full and not is_improvement(value, self._worst()[0], self.mode):
            return
        path = self.folder / f"epoch={state.epoch}-{self.monitor}={value:.4f}.safetensors"
        _save(weights, path)
        self.kept.append((value, str(path)))
        if full:
            worst = self._worst()
            self.kept.remove(worst)
            Path(worst[1]).unlink(missing_ok=True)

    @property
    def best_path(self) -> str | None:
        if not self.kept:
            return None
        return (min if self.mode == "min" else max)(self.kept)[1]

    def state_dict(self):
        return {"kept": [list(k) for k in self.kept]}

    def load_state_dict(self, state):
        self.kept = [(float(v), str(p)) for v, p in state["kept"]]


def _save(weights: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(weights, tmp)
    os.replace(tmp, path)
