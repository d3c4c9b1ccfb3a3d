"""The training loop: shuffled index-slice batches over pre-built tensors, on Lightning Fabric.

Each epoch draws its permutation from a generator seeded by (seed, epoch), gathers the training
tensors once in that order, and takes contiguous slices as batches. With the RNG states saved at
the end of each epoch, a resumed run replays exactly what an uninterrupted one would have done.
Fabric's module/optimizer wrappers are used only where they do something (several devices, mixed
precision); on one plain device the hot loop is bare PyTorch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fitwell.evaluate.metrics import epoch_metrics, probabilities
from fitwell.train.callbacks import Callback
from fitwell.train.checkpoint import clone_state, rng_state, set_rng_state


@dataclass
class TensorData:
    """Row-aligned tensors: the number block, the code block and the target."""

    numeric: torch.Tensor
    codes: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(self.numeric.to(device), self.codes.to(device), self.target.to(device))

    @classmethod
    def from_numpy(cls, numeric: np.ndarray, codes: np.ndarray, target: np.ndarray) -> TensorData:
        return cls(torch.from_numpy(numeric), torch.from_numpy(codes), torch.from_numpy(target))


@dataclass
class TrainState:
    """What the loop has done so far; checkpointed and restored on resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)
    should_stop: bool = False
    stop_reason: str | None = None
    best_epoch: int | None = None


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle: independent of everything else that used RNG."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class Trainer:
    """Fits ``model`` with ``loss_fn`` and ``optimizer`` for ``epochs`` epochs.

    Args:
        model: takes ``(numeric, codes)`` and returns logits / predictions.
        loss_fn: ``(output, target) -> scalar``.
        optimizer: over ``model``'s parameters.
        task: binary, multiclass or regression (picks the per-epoch metrics).
        epochs, batch_size, seed: as in ``train``.
        callbacks: Callback objects, run in ``order``.
        fabric: a launched ``lightning.fabric.Fabric``; None trains on the CPU without it.
        decode: maps regression outputs back to target units for metrics.
        config: the resolved run config, saved with every checkpoint.

    Example:
        >>> trainer = Trainer(model, loss, opt, task="binary", epochs=5, batch_size=64)  # doctest: +SKIP
        >>> state = trainer.fit(train_data, val_data)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, *,
                 task: str, epochs: int, batch_size: int, seed: int = 0,
                 callbacks: Sequence[Callback] = (), fabric: Any = None,
                 decode: Callable[[np.ndarray], np.ndarray] | None = None,
                 config: dict | None = None, device_data: bool = True):
        self.module = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.task, self.epochs, self.batch_size, self.seed = task, epochs, batch_size, seed
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.fabric = fabric
        self.decode = decode
        self.config = config or {}
        self.device = torch.device("cpu") if fabric is None else fabric.device
        self.data_device = self.device if device_data else torch.device("cpu")
        wrap = fabric is not None and (fabric.world_size > 1 or not _plain_precision(fabric))
        if wrap:
            self.model, self.optimizer = fabric.setup(model, optimizer)
            self._backward = fabric.backward
        else:
            self.model = model.to(self.device)
            self.loss_fn = loss_fn.to(self.device)
            self._backward = torch.Tensor.backward
        self.loss_fn = self.loss_fn.to(self.device)

    # --- the loop ------------------------------------------------------------------------
    def fit(self, train: TensorData, val: TensorData | None = None,
            checkpoint: dict | None = None) -> TrainState:
        """Train, validating after every epoch; resume from ``checkpoint`` when given."""
        state = TrainState()
        if checkpoint is not None:
            self._restore(checkpoint, state)
        train = train.to(self.data_device)
        val = val.to(self.data_device) if val is not None and len(val) else None
        for cb in self.callbacks:
            cb.on_fit_start(self, state)
        if checkpoint is not None:
            saved = checkpoint.get("callbacks", {})
            for cb in self.callbacks:
                if cb.state_key in saved:
                    cb.load_state_dict(saved[cb.state_key])
        batch_hooks = [cb for cb in self.callbacks if _overrides(cb, "on_batch_start")
                       or _overrides(cb, "on_batch_end")]
        try:
            while state.epoch < self.epochs and not state.should_stop:
                for cb in self.callbacks:
                    cb.on_epoch_start(self, state)
                started = time.perf_counter()
                train_loss = self._train_epoch(train, state, batch_hooks)
                state.epoch += 1
                row: dict[str, float] = {"epoch": state.epoch, "step": state.step,
                                         "train_loss": train_loss}
                if val is not None:
                    row.update(self.validate(val))
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                row["seconds"] = round(time.perf_counter() - started, 4)
                state.history.append(row)
                for cb in self.callbacks:
                    cb.on_validation_end(self, state, row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, state)
        except BaseException as error:
            for cb in self.callbacks:
                cb.on_exception(self, state, error)
            raise
        for cb in self.callbacks:
            cb.on_fit_end(self, state)
        return state

    def _train_epoch(self, data: TensorData, state: TrainState, hooks: list[Callback]) -> float:
        model, loss_fn, optimizer, backward = self.model, self.loss_fn, self.optimizer, self._backward
        model.train()
        n, size = len(data), self.batch_size
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, state.epoch))
        order = torch.randperm(n, generator=generator).to(data.numeric.device)
        numeric, codes, target = data.numeric[order], data.codes[order], data.target[order]
        if numeric.device != self.device:
            numeric, codes, target = (t.to(self.device, non_blocking=True)
                                      for t in (numeric, codes, target))
        total = torch.zeros((), device=self.device)
        stop = n if n % size != 1 or n == 1 else n - 1  # a lone last row breaks batch norm
        for start in range(0, stop, size):
            end = min(start + size, stop)
            if hooks:
                for cb in hooks:
                    cb.on_batch_start(self, state)
            loss = loss_fn(model(numeric[start:end], codes[start:end]), target[start:end])
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            optimizer.step()
            total += loss.detach() * (end - start)
            state.step += 1
            if hooks:
                state.last_loss = loss
                for cb in hooks:
                    cb.on_batch_end(self, state)
        return float(total) / stop

    # --- evaluation ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_output(self, numeric: torch.Tensor, codes: torch.Tensor,
                       chunk: int = 16384) -> torch.Tensor:
        """Raw model outputs in eval mode, in chunks; training mode is restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [self.model(numeric[i:i + chunk].to(self.device), codes[i:i + chunk].to(self.device))
                     for i in range(0, len(numeric), chunk)]
        finally:
            self.model.train(was_training)
        return torch.cat(parts).float()

    def validate(self, data: TensorData) -> dict[str, float]:
        output = self.predict_output(data.numeric, data.codes)
        target = data.target.to(output.device)
        with torch.inference_mode():
            loss = float(self.loss_fn(output, target))
        out = output.cpu().numpy()
        y = target.cpu().numpy()
        if self.task == "regression":
            decode = self.decode or (lambda v: v)
            metrics = epoch_metrics("regression", decode(y), decode(out.reshape(-1)))
        else:
            metrics = epoch_metrics(self.task, y, probabilities(self.task, out))
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self, state: TrainState) -> dict:
        """A snapshot (tensors cloned to CPU) of everything needed to resume exactly."""
        return {
            "version": 1,
            "model": clone_state(self.module.state_dict()),
            "optimizer": clone_state(self.optimizer.state_dict()),
            "trainer": {"epoch": state.epoch, "step": state.step,
                        "history": [dict(row) for row in state.history]},
            "callbacks": clone_state({cb.state_key: cb.state_dict() for cb in self.callbacks}),
            "rng": clone_state(rng_state()),
            "config": self.config,
        }

    def _restore(self, checkpoint: dict, state: TrainState) -> None:
        self.module.load_state_dict(checkpoint["model"], strict=True)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        saved = checkpoint["trainer"]
        state.epoch, state.step = saved["epoch"], saved["step"]
        state.history = [dict(row) for row in saved["history"]]
        set_rng_state(checkpoint["rng"])


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def _plain_precision(fabric: Any) -> bool:
    from lightning_fabric.plugins.precision import Precision

    return type(fabric._precision) is Precision


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
