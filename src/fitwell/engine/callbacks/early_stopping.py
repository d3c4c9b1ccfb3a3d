"""Stop when a monitored metric stops improving, and restore the best weights."""

from __future__ import annotations

from fitwell.engine.callbacks.base import Callback, is_improvement


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; restore the best weights.

    Args:
        monitor: a logged metric, e.g. ``val_loss`` or ``val_roc_auc``.
        mode: "min" or "max".
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        restore_best: load the best epoch's weights when training ends.

    Example:
        >>> EarlyStopping("val_loss", mode="min", patience=5).patience
        5
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.on_fit_start(None, None)

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
                weights = trainer.eval_module.state_dict()
                self.best_weights = {k: v.detach().clone() for k, v in weights.items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.should_stop = True
            self.stopped_epoch = state.epoch
            state.stop_reason = (f"early stopping: {self.monitor} did not improve on {self.best:.5g}"
                                 f" (epoch {self.best_epoch}) for {self.patience} epochs")

    def on_fit_end(self, trainer, state):
        if self.restore_best and self.best_weights is not None and not state.diverged:
            trainer.eval_module.load_state_dict(self.best_weights)
            state.best_epoch = self.best_epoch

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights, self.stopped_epoch = state["best_weights"], state["stopped_epoch"]
