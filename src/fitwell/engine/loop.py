"""The training loop: shuffled index-slice batches over pre-built tensors, on Lightning Fabric.

Each epoch draws its permutation from a generator seeded by (seed, epoch), gathers the training
tensors once in that order, and takes contiguous slices as batches. A checkpoint records the
epoch, the batch reached inside it, the running loss and every RNG state, so a resumed run --
from an epoch boundary or from mid-epoch -- replays exactly what an uninterrupted one would do.
Fabric's module/optimizer wrappers are used only where they do something (several devices, mixed
precision); on one plain device the hot loop is bare PyTorch. On several processes each rank trains
its share of every global batch (``fitwell.engine.distributed``).

Why this module is long: the loop, its validation and its checkpoint state change together -- exact
resume (one process or several) depends on all three agreeing on what a step, a batch and an epoch
are -- so they stay in one place.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fitwell.config.schema import EPOCH_METRICS
from fitwell.data.tensors import RowsInOrder, TensorData, predict_in_chunks
from fitwell.engine.averaging import WeightAverage
from fitwell.engine.callbacks.base import Callback
from fitwell.engine.checkpoint import clone_state, rng_state, set_rng_state
from fitwell.engine.distributed import World
from fitwell.engine.regularize import WeightPenalty
from fitwell.engine.schedules import Schedule
from fitwell.evaluate.metrics import epoch_metrics, probabilities


@dataclass
class TrainState:
    """What the loop has done so far; checkpointed and restored on resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches done in the current epoch
    batches_per_epoch: int = 0
    epoch_total: float = 0.0  # sum of row losses so far in the current epoch
    history: list[dict[str, float]] = field(default_factory=list)
    should_stop: bool = False
    stop_reason: str | None = None
    diverged: bool = False
    best_epoch: int | None = None
    last_loss: Any = None
    at_step_boundary: bool = True


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle: independent of everything else that used RNG."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class Trainer:
    """Fits ``model`` with ``loss_fn`` and ``optimizer``.

    Args:
        model: takes ``(numeric, codes)`` and returns logits / predictions.
        loss_fn: ``(output, target, weight=None) -> scalar``.
        optimizer: over ``model``'s parameters.
        task: binary, multiclass or regression (picks the per-epoch metrics).
        epochs, batch_size, seed: as in ``train``.
        callbacks: Callback objects, run in ``order``.
        fabric: a ``lightning_fabric.Fabric``; None trains on the CPU without it.
        schedule: a learning-rate Schedule (see ``schedules.build_schedule``).
        penalty: an L1/L2 WeightPenalty added to the loss.
        averaging: an EMA / SWA WeightAverage; validation and the final weights use it.
        clip_grad_norm, clip_grad_value: gradient clipping before each optimizer step.
        accumulate_batches: optimizer step every n batches (the loss is divided by n).
        decode: maps regression outputs back to target units for metrics.
        config: the resolved run config, saved with every checkpoint.
        run_dir: the run directory (callbacks resolve relative paths against it).
        augment: a BatchAugment applied to training batches only (``fitwell.data.augment``).
        privacy: a ``fitwell.privacy.dpsgd.PrivateTraining`` (also among the callbacks): DP-SGD
            on Poisson-sampled batches instead of the shuffled slices.
        shard: on several processes, shard the network with FSDP2 (``fitwell.engine.sharding``)
            instead of replicating it with DDP; ``precision`` is then its mixed-precision policy.

    Example:
        >>> trainer = Trainer(model, loss, opt, task="binary", epochs=5, batch_size=64)  # doctest: +SKIP
        >>> state = trainer.fit(train_data, val_data)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, *,
                 task: str, epochs: int, batch_size: int, seed: int = 0,
                 callbacks: Sequence[Callback] = (), fabric: Any = None,
                 schedule: Schedule | None = None, penalty: WeightPenalty | None = None,
                 averaging: WeightAverage | None = None, clip_grad_norm: float | None = None,
                 clip_grad_value: float | None = None, accumulate_batches: int = 1,
                 decode: Callable[[np.ndarray], np.ndarray] | None = None,
                 config: dict | None = None, device_data: bool = True, run_dir: Any = None,
                 augment: Any = None, privacy: Any = None, shard: bool = False,
                 precision: str = "32-true"):
        self.module = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.task, self.epochs, self.batch_size, self.seed = task, epochs, batch_size, seed
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.fabric = fabric
        self.schedule, self.penalty, self.averaging = schedule, penalty, averaging
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        self.accumulate_batches = accumulate_batches
        self.decode = decode
        self.config = config or {}
        self.run_dir = run_dir
        self.augment = augment
        self.epoch_lrs: list[float] = []  # the rates in force during the last epoch
        self._swa_done = False
        self.device = torch.device("cpu") if fabric is None else fabric.device
        self.data_device = self.device if device_data else torch.device("cpu")
        self.wrapped = fabric is not None and (fabric.world_size > 1 or not _plain_precision(fabric))
        self.world = World.of(fabric, seed)  # several processes: each trains its share of a batch
        self.sharded = shard and self.world is not None
        self.reads_batch_loss = any(cb.uses_hook("on_batch_end") for cb in self.callbacks)  # all ranks'
        self.gathers_each_epoch = bool(self.callbacks)  # sharded: callbacks read the full weights then
        if self.world is not None and self.world.rank > 0:  # rank 0 alone writes files and logs
            self.callbacks = [cb for cb in self.callbacks if not getattr(cb, "rank_zero_only", False)
                              or (self.sharded and getattr(cb, "every_rank_when_sharded", False))]
        self.privacy, self.train_loss = privacy, loss_fn
        self._gathered_optimizer: dict = {}  # sharded: the full optimizer state at the last epoch's end
        if self.sharded:  # a sharded copy trains; ``model`` gets its weights at every epoch's end
            from fitwell.engine.sharding import shard as shard_model

            self.model, self.wrapped = shard_model(model, optimizer, self.device, precision), False
            self._backward = torch.Tensor.backward
        elif self.wrapped:
            self.model, self.optimizer = fabric.setup(model, optimizer)
            self._backward = fabric.backward
            if self.world is not None and _plain_precision(fabric):  # Fabric's wrappers would only cost
                self.model, self.optimizer, self.wrapped = self.model._forward_module, optimizer, False
                self._backward = torch.Tensor.backward
                if self.reads_batch_loss:
                    self.world.carry_loss(self.model)
        else:
            self.model = model.to(self.device)
            self._backward = torch.Tensor.backward
        if privacy is not None:  # Opacus' module, optimizer and loss: per-row clipping, noise
            self.model, self.optimizer, self.train_loss = privacy.wrap(self.model, optimizer, loss_fn)
            self._backward = _private_backward
        if averaging is not None:
            averaging.model.to(self.device)
        self.loss_fn = self.loss_fn.to(self.device)

    @property
    def eval_module(self) -> nn.Module:
        """The weights that are validated and saved: the averaged copy when averaging."""
        if self.averaging is not None and (self.averaging.kind == "ema" or self._swa_done):
            return self.averaging.module
        return self.module


    # --- the loop ------------------------------------------------------------------------
    def fit(self, train: TensorData, val: TensorData | None = None,
            checkpoint: dict | None = None) -> TrainState:
        """Train, validating after every epoch; resume from ``checkpoint`` when given."""
        state = TrainState()
        state.batches_per_epoch = self.batches_per_epoch(len(train))
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
        try:
            while state.epoch < self.epochs and not state.should_stop:
                for cb in self.callbacks:
                    cb.on_epoch_start(self, state)
                started = time.perf_counter()
                train_loss = self._train_epoch(train, state) if self.privacy is None else \
                    self.privacy.epoch(self, train, state)
                state.epoch += 1
                if self.sharded and self.gathers_each_epoch:
                    self._gather()
                self.epoch_lrs = [group["lr"] for group in self.optimizer.param_groups]  # in force
                self._end_of_epoch_schedules(state)
                row: dict[str, float] = {"epoch": state.epoch, "step": state.step, "train_loss": train_loss}
                if val is not None:
                    row.update(self.validate(val))
                if self.schedule is not None and self.schedule.interval == "plateau":
                    self.schedule.scheduler.step(row.get(self.schedule.monitor, float("nan")))
                row["lr"] = self.epoch_lrs[0]
                row["seconds"] = round(time.perf_counter() - started, 4)
                for cb in self.callbacks:
                    cb.on_validation_end(self, state, row)
                state.history.append(row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, state)
            if self.sharded and not self.gathers_each_epoch:  # no callback read them: once, at the end
                self._gather()
            self._finish_averaging(train)
        except BaseException as error:
            for cb in self.callbacks:
                cb.on_exception(self, state, error)
            raise
        for cb in self.callbacks:
            cb.on_fit_end(self, state)
        if self.sharded:  # from here rank 0 alone scores, with the full weights in ``module``
            self.model, self.world, self.sharded = self.module.to(self.device), None, False
        return state

    def _gather(self) -> None:
        """Sharded: the full weights into ``module`` and the full optimizer state (rank 0)."""
        from fitwell.engine.sharding import gather

        weights, self._gathered_optimizer = gather(self.model, self.optimizer)
        if weights:
            self.module.load_state_dict(weights)

    def batches_per_epoch(self, n: int) -> int:
        if self.privacy is not None:  # its own steps: Poisson samples (DP-SGD) or slices (DP-FTRL)
            return self.privacy.batches(n)
        return -(-self._stop(n) // self.batch_size)

    def _stop(self, n: int) -> int:
        """Rows of an epoch that are trained."""
        if self.world is not None:
            return self.world.stop(n, self.batch_size)
        return n if n % self.batch_size != 1 or n == 1 else n - 1  # a lone last row breaks batch norm

    def _train_epoch(self, data: TensorData, state: TrainState) -> float:
        model, loss_fn, optimizer, backward = self.model, self.loss_fn, self.optimizer, self._backward
        start_hooks = [cb for cb in self.callbacks if cb.uses_hook("on_batch_start")]
        end_hooks = [cb for cb in self.callbacks if cb.uses_hook("on_batch_end")]
        step_hooks = [cb for cb in self.callbacks if cb.uses_hook("on_before_optimizer_step")]
        penalty = self.penalty if self.penalty else None
        accumulate = self.accumulate_batches
        per_batch_schedule = self.schedule is not None and self.schedule.interval == "batch"
        averaging = self.averaging if self.averaging is not None and self.averaging.per_step else None
        clip = self.clip_grad_norm is not None or self.clip_grad_value is not None
        model.train()
        size, stop, world = self.batch_size, self._stop(len(data)), self.world
        agree = world is not None and not all(getattr(cb, "stops_alike", False) for cb in end_hooks)
        numeric, codes, target, weight, inputs, bounds = self._epoch_order(data, state.epoch)
        augment = self.augment
        num_batches = state.batches_per_epoch
        deferred = world is not None and not self.reads_batch_loss  # ranks sum their own, added up at the end
        total = torch.full((), 0.0 if deferred and world.rank else state.epoch_total, device=self.device,
                           dtype=None if world is None else torch.float64)
        for batch in range(state.batch_in_epoch, num_batches):
            if world is None:
                start, end = batch * size, min((batch + 1) * size, stop)
            else:  # this rank's share of the global batch; its own seeded dropout/augmentation
                start, end, rows = bounds[batch]
                world.seed_batch(state.epoch, batch)
            for cb in start_hooks:
                cb.on_batch_start(self, state)
            if augment is None and not inputs:  # the plain tabular path: nothing extra per batch
                output = model(numeric[start:end], codes[start:end])
                if weight is None:
                    loss = loss_fn(output, target[start:end])
                else:
                    loss = loss_fn(output, target[start:end], weight[start:end])
            else:
                loss = self.batch_loss(numeric, codes, inputs, target, weight, start, end)
            if penalty is not None:
                loss = loss + penalty()
            scaled = loss if world is None else world.scaled(loss, end - start, rows)
            backward(scaled / accumulate if accumulate > 1 else scaled)
            boundary = accumulate == 1 or (batch + 1) % accumulate == 0 or batch + 1 == num_batches
            if boundary:
                self._step(state, optimizer, clip, step_hooks, per_batch_schedule, averaging)
            # on several processes the whole batch's loss, alike on every rank (NaN check, checkpoint)
            batch_sum = loss.detach() * (end - start) if world is None or deferred else \
                world.batch_sum(loss, end - start)
            total += batch_sum
            if end_hooks:
                state.batch_in_epoch, state.at_step_boundary = batch + 1, boundary
                state.last_loss = loss.detach() if world is None else batch_sum / rows
                state.epoch_total = total  # a tensor here; made a float when checkpointed
                for cb in end_hooks:
                    cb.on_batch_end(self, state)
                if agree:
                    self._agree_on_stop(state)
                if state.should_stop:
                    break
        state.batch_in_epoch, state.epoch_total, state.at_step_boundary = 0, 0.0, True
        return float(total if not deferred else world.sum(total.reshape(1))[0]) / stop

    def _step(self, state: TrainState, optimizer, clip: bool, step_hooks, per_batch_schedule: bool,
              averaging) -> None:
        """One optimizer step on the accumulated gradients, with what goes with it."""
        if clip:
            self._clip()
        for cb in step_hooks:
            cb.on_before_optimizer_step(self, state)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if per_batch_schedule:
            self.schedule.scheduler.step()
        if averaging is not None:
            averaging.update(self.module)
        state.step += 1

    def _agree_on_stop(self, state: TrainState) -> None:
        """A stop or a divergence on any rank stops every rank at the same batch."""
        stop, diverged = self.world.agree(state.should_stop, state.diverged)
        if stop and not state.should_stop:
            state.stop_reason = state.stop_reason or "stopped by another process of this run"
        state.should_stop, state.diverged = stop, diverged or state.diverged

    def _epoch_order(self, data: TensorData, epoch: int):
        """Every block gathered once in the epoch's seeded order (this rank's share of it, on
        several processes), on the training device; with the batches' bounds on several processes."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(len(data), generator=generator)
        bounds = None
        if self.world is not None:
            order, bounds = self.world.epoch_rows(order, len(data), self.batch_size)
        if data.out_of_core:  # each batch gathered from the memory map when the loop slices it
            device = None if self.device.type == "cpu" else self.device
            blocks = [None if b is None else RowsInOrder(b, order, device)
                      for b in (data.numeric, data.codes, data.target, data.weight)]
            return (*blocks, {k: RowsInOrder(v, order, device) for k, v in data.inputs.items()}, bounds)
        order = order.to(data.numeric.device)
        numeric, codes, target = data.numeric[order], data.codes[order], data.target[order]
        weight = None if data.weight is None else data.weight[order]
        inputs = {k: v[order] for k, v in data.inputs.items()}
        if numeric.device != self.device:
            numeric, codes, target = (t.to(self.device, non_blocking=True) for t in (numeric, codes, target))
            weight = None if weight is None else weight.to(self.device, non_blocking=True)
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        return numeric, codes, target, weight, inputs, bounds

    def batch_loss(self, numeric, codes, inputs, target, weight, start: int, end: int) -> torch.Tensor:
        """One batch with input blocks and/or augmentation; mixup/cutmix mix the loss too."""
        batch_numeric, batch_codes = numeric[start:end], codes[start:end]
        batch_inputs = {k: v[start:end] for k, v in inputs.items()}
        batch_target = target[start:end]
        batch_weight = None if weight is None else weight[start:end]
        mix = None
        if self.augment is not None:
            batch_numeric, batch_codes, batch_inputs, mix = self.augment(
                batch_numeric, batch_codes, batch_inputs, batch_target)
        output = self.model(batch_numeric, batch_codes, **batch_inputs)
        loss = self._loss(output, batch_target, batch_weight)
        if mix is not None:  # mixup / cutmix: lam * loss(y_a) + (1 - lam) * loss(y_b)
            permutation, lam = mix
            other_weight = None if batch_weight is None else batch_weight[permutation]
            loss = lam * loss + (1.0 - lam) * self._loss(output, batch_target[permutation], other_weight)
        return loss

    def _loss(self, output, target, weight):
        return self.train_loss(output, target) if weight is None else self.train_loss(output, target, weight)

    def _clip(self) -> None:
        if self.wrapped:
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=self.clip_grad_norm,
                                       clip_val=self.clip_grad_value)
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(params, self.clip_grad_value)
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)

    def _end_of_epoch_schedules(self, state: TrainState) -> None:
        averaging = self.averaging
        if averaging is not None and averaging.kind == "swa" and averaging.active(state.epoch):
            averaging.update(self.module)
            if averaging.swa_scheduler is not None:
                averaging.swa_scheduler.step()
                return  # SWA's constant rate replaces the main schedule while averaging
        if self.schedule is not None and self.schedule.interval == "epoch":
            self.schedule.scheduler.step()

    def _finish_averaging(self, train: TensorData) -> None:
        if self.averaging is None or self.averaging.kind != "swa":
            return
        if self.averaging.model.n_averaged.item() == 0:
            return  # stopped before SWA started: keep the trained weights
        size = max(self.batch_size, 256)
        device = self.device
        self.averaging.finish((train.numeric[i:i + size].to(device), train.codes[i:i + size].to(device),
                               {k: v[i:i + size].to(device) for k, v in train.inputs.items()})
                              for i in range(0, len(train), size))
        self._swa_done = True

    # --- evaluation ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_output(self, data: TensorData, chunk: int | None = None,
                       module: nn.Module | None = None) -> torch.Tensor:
        """Raw outputs of the evaluated weights in eval mode, in chunks; modes restored after.
        Never augmented."""
        plain = self.eval_module is self.module and self.world is None  # never DDP's forward: no collectives
        module = module or (self.model if plain else self.eval_module)
        chunk = chunk or (16384 if not data.inputs else 512)
        return predict_in_chunks(module, data, self.device, chunk)

    def validate(self, data: TensorData) -> dict[str, float]:
        if self.world is None:
            output = self.predict_output(data)
        else:  # each rank predicts its share; every rank gets all rows, so all decide alike
            low, high = self.world.rows(len(data))
            if self.sharded:  # the same forward calls on every rank (each gathers the weights)
                rows = np.minimum(np.arange(low, low + -(-len(data) // self.world.size)), len(data) - 1)
                part = self.predict_output(data.select(rows), module=self.model)[:high - low]
            else:
                part = self.predict_output(data.select(np.arange(low, high)))
            output = self.world.gather_rows(part.to(self.world.device), len(data)).to(self.device)
        target = data.target.to(output.device)
        with torch.inference_mode():
            weight = None if data.weight is None else data.weight.to(output.device)
            loss = self.loss_fn(output, target) if weight is None else self.loss_fn(output, target, weight)
            loss = float(loss)
        if not (math.isfinite(loss) and bool(torch.isfinite(output).all())):  # diverged: no metrics
            return {f"val_{name}": math.nan for name in EPOCH_METRICS[self.task]}
        out = output.cpu().numpy()
        y = target.cpu().numpy()
        if EPOCH_METRICS[self.task] == ("loss",):  # an autoencoder: its reconstruction error is the score
            metrics = {}
        elif self.task == "regression":
            decode = self.decode or (lambda v: v)
            metrics = epoch_metrics("regression", decode(y), decode(out.reshape(-1)))
        else:
            metrics = epoch_metrics(self.task, y, probabilities(self.task, out))
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self, state: TrainState) -> dict:
        """A snapshot (tensors cloned to CPU) of everything needed to resume exactly."""
        total = state.epoch_total
        return {
            "version": 2,
            "model": clone_state(self.module.state_dict()),
            "optimizer": clone_state(self._gathered_optimizer if self.sharded
                                     else self.optimizer.state_dict()),
            "schedule": None if self.schedule is None else clone_state(self.schedule.state_dict()),
            "averaging": None if self.averaging is None else clone_state(self.averaging.state_dict()),
            "scaler": clone_state(_scaler_state(self.fabric)),
            "trainer": {"epoch": state.epoch, "step": state.step, "batch_in_epoch": state.batch_in_epoch,
                        "epoch_total": float(total), "history": [dict(row) for row in state.history]},
            "callbacks": clone_state({cb.state_key: cb.state_dict() for cb in self.callbacks}),
            "rng": clone_state(rng_state()),
            "config": self.config,
        }

    def _restore(self, checkpoint: dict, state: TrainState) -> None:
        self.module.load_state_dict(checkpoint["model"], strict=True)
        if self.sharded:  # the full checkpoint, sharded: each rank keeps its part
            from fitwell.engine.sharding import restore

            restore(self.model, self.optimizer, checkpoint["model"], checkpoint["optimizer"])
        else:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.schedule is not None and checkpoint.get("schedule") is not None:
            self.schedule.load_state_dict(checkpoint["schedule"])
        if self.averaging is not None and checkpoint.get("averaging") is not None:
            self.averaging.load_state_dict(checkpoint["averaging"])
        if checkpoint.get("scaler"):
            _scaler_load(self.fabric, checkpoint["scaler"])
        saved = checkpoint["trainer"]
        state.epoch, state.step = saved["epoch"], saved["step"]
        state.batch_in_epoch = saved.get("batch_in_epoch", 0)
        state.epoch_total = saved.get("epoch_total", 0.0)
        state.history = [dict(row) for row in saved["history"]]
        set_rng_state(checkpoint["rng"])


def _private_backward(loss) -> None:
    with warnings.catch_warnings():  # Opacus' hooks on a first layer whose inputs need no gradient
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss.backward()  # ghost clipping's loss runs its own two passes


def _plain_precision(fabric: Any) -> bool:
    from lightning_fabric.plugins.precision import Precision

    return type(fabric._precision) is Precision


def _scaler_state(fabric: Any) -> dict:
    scaler = getattr(getattr(fabric, "_precision", None), "scaler", None)
    return scaler.state_dict() if scaler is not None else {}


def _scaler_load(fabric: Any, state: dict) -> None:
    scaler = getattr(getattr(fabric, "_precision", None), "scaler", None)
    if scaler is not None:
        scaler.load_state_dict(state)
