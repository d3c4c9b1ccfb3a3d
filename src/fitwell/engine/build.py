"""The one place that builds a trainer from a run config: loss, optimizer, schedule, penalties,
averaging, callbacks and the Trainer itself. The pipeline, the scikit-learn estimators and the
ensemble's fitwell members all build theirs here."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitwell.config.schema import RunConfig, check_monitor
from fitwell.data.tensors import TensorData
from fitwell.engine.averaging import WeightAverage
from fitwell.engine.callbacks import (
    Budget,
    Callback,
    CheckpointWriter,
    EarlyStopping,
    GradientNormMonitor,
    LearningRateMonitor,
    MetricsLogger,
    NanGuard,
    ProgressBar,
    build_callback,
)
from fitwell.engine.loop import Trainer
from fitwell.engine.losses import build_loss
from fitwell.engine.optim import build_optimizer
from fitwell.engine.regularize import WeightPenalty
from fitwell.engine.schedules import build_schedule
from fitwell.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """What PyTorch needs for bit-for-bit repeatable runs (see PyTorch's reproducibility notes)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # the call imports torch's compiler stack (0.8 s here): make it only when the setting changes
    if enabled != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def build_fabric(config: RunConfig):
    """One-device Fabric for ``train.accelerator`` and ``train.precision``; None for plain 32-bit
    training on the CPU, where Fabric does nothing the loop needs (and importing it costs 0.8 s)."""
    train = config.train
    if train.precision == "32-true" and (train.accelerator == "cpu" or (
            train.accelerator == "auto" and not accelerator_available())):
        return None
    from lightning_fabric import Fabric

    try:
        return Fabric(accelerator=config.train.accelerator, devices=1, precision=config.train.precision)
    except Exception as err:  # Fabric's MisconfigurationException and ValueError
        raise ConfigError(f"train.accelerator / train.precision: {err}") from err


def accelerator_available() -> bool:
    """A CUDA or Apple MPS device that ``train.accelerator: auto`` would pick."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def device_of(fabric) -> torch.device:
    """Where training runs: the Fabric's device, or the CPU without one."""
    return torch.device("cpu") if fabric is None else fabric.device


def class_weights_for(setting, classes: list, y: np.ndarray) -> torch.Tensor | None:
    """``train.class_weights`` as a tensor in class order: "balanced" from ``y``, or by class name."""
    if setting is None:
        return None
    if setting == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(y)
        weights = np.ones(len(classes))
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
        return torch.tensor(weights, dtype=torch.float32)
    by_name = {str(k): float(v) for k, v in setting.items()}
    unknown = sorted(set(by_name) - {str(c) for c in classes})
    if unknown:
        raise ConfigError(f"train.class_weights: unknown classes {', '.join(unknown)}; classes are"
                          f" {', '.join(map(str, classes))}")
    return torch.tensor([by_name.get(str(c), 1.0) for c in classes], dtype=torch.float32)


def build_run_loss(config: RunConfig, task: str, classes: list | None = None, y: np.ndarray | None = None):
    """The loss ``train.*`` configures; class weights come from the training targets ``y``."""
    train = config.train
    weights = None
    if task != "regression" and classes is not None and y is not None:
        weights = class_weights_for(train.class_weights, classes, y)
    return build_loss(train.loss, task, weights, train.huber_delta, train.focal_gamma, train.label_smoothing)


def build_run_optimizer(config: RunConfig, module: torch.nn.Module, lr: float | None = None):
    """The optimizer ``train.*`` configures, at ``lr`` (default ``train.lr``)."""
    train = config.train
    rate = train.lr if lr is None else lr
    return build_optimizer(train.optimizer, module, rate, train.weight_decay, train.momentum, train.nesterov)


def stopping_callbacks(config: RunConfig, validation: bool) -> list[Callback]:
    """The NaN guard, and early stopping when there are validation rows to watch."""
    train = config.train
    chosen: list[Callback] = [NanGuard()] if train.nan_guard else []
    stop = train.early_stopping
    if stop.enabled and validation and config.privacy is None:  # private: validation does not pick
        restore = stop.restore_best and not (train.averaging and train.averaging.kind == "swa")
        chosen.append(EarlyStopping(stop.monitor, stop.resolved_mode, stop.patience, stop.min_delta, restore))
    return chosen


def build_callbacks(config: RunConfig, folder: Path, extra: Sequence[Callback] = (),
                    console=None, started_at: float | None = None) -> list[Callback]:
    """The callbacks of a run writing to ``folder``: logging, checkpoints, stopping, budget,
    progress, gradient norms, those named in ``train.callbacks``, then ``extra``."""
    train = config.train
    chosen: list[Callback] = [
        MetricsLogger(folder / "history.jsonl"), LearningRateMonitor(),
        CheckpointWriter(folder / "checkpoints", train.checkpoint_every, train.checkpoint_every_steps,
                         train.checkpoint_max_overhead),
        *stopping_callbacks(config, validation=True),
    ]
    if train.max_time or train.max_steps:  # from the run's start, a tenth kept for scoring and report
        chosen.append(Budget(train.max_time, train.max_steps, started_at, 0.1 if started_at else 0.0))
    if train.progress and console is not None:
        chosen.append(ProgressBar(train.early_stopping.monitor, console=console))
    if train.grad_norm_every and config.privacy is None:  # a private run's raw gradients stay unlogged
        chosen.append(GradientNormMonitor(train.grad_norm_every))
    chosen.extend(build_callback(spec.model_dump(), i) for i, spec in enumerate(train.callbacks))
    chosen.extend(extra)
    return chosen


def check_callback_monitors(callbacks: Sequence[Callback], task: str) -> None:
    """A callback watching a metric the loop never logs is a config error now, not at epoch 40."""
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str):
            try:
                check_monitor(monitor, task, f"callback {type(callback).__name__}.monitor")
            except ValueError as err:
                raise ConfigError(str(err)) from err


def build_trainer(config: RunConfig, model: torch.nn.Module, loss_fn, task: str, num_train_rows: int,
                  callbacks: Sequence[Callback], *, fabric=None, decode=None, run_dir=None,
                  inputs: dict | None = None, privacy=None) -> Trainer:
    """The Trainer ``train.*`` configures: optimizer (backbone/head rates from ``transfer``),
    schedule, penalties, averaging, clipping, ``augment`` on the training batches, and DP-SGD
    when ``privacy`` (a ``fitwell.privacy.dpsgd.PrivateTraining``) is given."""
    from fitwell.engine.transfer import discriminative_groups

    train = config.train
    if train.batch_size == "auto" or train.lr == "auto":
        raise ConfigError("train.batch_size and train.lr must be resolved before training (auto is"
                          " measured by fitwell train; set a number here)")
    optimizer = build_run_optimizer(config, model)
    discriminative_groups(optimizer, model, config.transfer.backbone_lr)
    augment = None
    if config.augment.enabled:
        from fitwell.data.augment import BatchAugment

        augment = BatchAugment(config.augment, inputs or {}, task)
    batches = -(-num_train_rows // train.batch_size)
    steps_per_epoch = -(-batches // train.accumulate_batches)
    if privacy is not None:
        steps_per_epoch = privacy.plan.steps // train.epochs
        callbacks = [*callbacks, privacy]
    schedule = build_schedule(train.schedule, optimizer, steps_per_epoch, train.epochs, train.lr)
    averaging = None
    if train.averaging is not None:
        avg = train.averaging
        averaging = WeightAverage(model, optimizer, avg.kind, avg.decay, avg.start_epoch, avg.swa_lr)
    return Trainer(model, loss_fn, optimizer, task=task, epochs=train.epochs, batch_size=train.batch_size,
                   seed=config.seed, callbacks=callbacks, fabric=fabric, schedule=schedule,
                   penalty=WeightPenalty(model, train.l1, train.l2), averaging=averaging,
                   clip_grad_norm=train.clip_grad_norm, clip_grad_value=train.clip_grad_value,
                   accumulate_batches=train.accumulate_batches, decode=decode,
                   config=config.model_dump(mode="json"), device_data=train.device_data,
                   run_dir=run_dir, augment=augment, privacy=privacy, shard=train.strategy == "fsdp",
                   precision=train.precision)


def measure_auto(config: RunConfig, model: torch.nn.Module, loss_fn, data: TensorData,
                 device: torch.device, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Measured values for ``batch_size: auto`` and ``lr: auto`` (batch size first), as dotted
    keys for the resolve step; the evidence goes to ``folder`` (batch_size.json, lr_find.png)."""
    from fitwell.engine.batch_size import find_batch_size
    from fitwell.engine.lr_find import lr_range_test
    from fitwell.files import write_json

    train = config.train
    values: dict[str, Any] = {}
    lr = train.lr if train.lr != "auto" else 1e-3
    batch_size = train.batch_size
    if batch_size == "auto":
        found = find_batch_size(model, loss_fn, lambda m: build_run_optimizer(config, m, lr), data, device,
                                train.batch_size_memory_cap)
        batch_size = values["train.batch_size"] = found.batch_size
        write_json(folder / "batch_size.json", {"batch_size": found.batch_size, "reason": found.reason,
                                                "tried": found.tried})
        say(f"batch_size auto -> {found.batch_size}: {found.reason}")
    if train.lr == "auto":
        result = lr_range_test(model, loss_fn, lambda m, rate: build_run_optimizer(config, m, rate), data,
                               batch_size, seed=config.seed, device=device)
        result.save(folder)
        values["train.lr"] = result.suggestion
        say(f"lr auto -> {result.suggestion:.3g} (range test plot: {folder / 'lr_find.png'})")
    return values


def training_threads(config: RunConfig, model: torch.nn.Module, data: TensorData,
                     device: torch.device | str = "cpu") -> tuple[int, str, list]:
    """The CPU thread count for training ``model`` on ``data`` (see ``fitwell.engine.threads``),
    why, and the callbacks that keep it to the free cores while training (a count taken from
    them, above one; else none)."""
    from fitwell.engine.threads import FollowFreeCores, choose_threads, follows_load, forward_macs

    if torch.device(device).type != "cpu" or len(data) == 0:
        return torch.get_num_threads(), "training runs on an accelerator", []
    rows = min(2, len(data))
    sample = data.select(np.arange(rows))
    macs = forward_macs(model, sample.numeric, sample.codes, sample.inputs) // rows
    train = config.train
    threads, why = choose_threads(train.threads, macs * train.batch_size, train.deterministic)
    follow = threads > 1 and follows_load(train.threads, train.deterministic)
    return threads, why, [FollowFreeCores(threads)] if follow else []


def held_out_rows(target: np.ndarray, task: str, share: float, seed: int,
                  enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows for early stopping inside ``fit`` (stratified when every class
    can be); no held-out rows when disabled or under 20 rows."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(target))
    if not enabled or len(rows) < 20:
        return rows, rows[:0]
    stratify = None
    if task != "regression":
        _, counts = np.unique(target, return_counts=True)
        if counts.min() >= 2 and share * len(rows) >= len(counts):
            stratify = target
    train_rows, val_rows = train_test_split(rows, test_size=share, random_state=seed, stratify=stratify)
    return train_rows, val_rows


def fit_arrays(config: RunConfig, model: torch.nn.Module, task: str, numeric: np.ndarray, codes: np.ndarray,
               target: np.ndarray, weight: np.ndarray | None = None, *, num_classes: int = 0,
               validation_fraction: float = 0.1, decode=None):
    """Train ``model`` on arrays as ``train.*`` configures, holding out ``validation_fraction`` of
    the rows for early stopping; the estimators and the ensemble's fitwell members train here.

    Returns:
        ``(trained module in eval mode, TrainState)``.

    Raises:
        TrainingFailed: training diverged.
    """
    from fitwell.errors import TrainingFailed

    if config.privacy is not None:  # never a silently non-private fit
        raise ConfigError("privacy: the scikit-learn estimators and ensemble members do not train"
                          " privately; train a private model with fitwell train (or fitwell.train)")
    torch.manual_seed(config.seed)
    train_rows, val_rows = held_out_rows(target, task, validation_fraction, config.seed,
                                         config.train.early_stopping.enabled)
    validation = len(val_rows) > 0
    loss_fn = build_run_loss(config, task, list(range(num_classes)), target[train_rows])

    def part(index):
        return TensorData.from_numpy(numeric[index], codes[index], target[index],
                                     None if weight is None else weight[index])

    from fitwell.engine.threads import thread_limit

    threads, _, chosen = training_threads(config, model, part(train_rows[:2]))
    chosen += stopping_callbacks(config, validation)
    if config.train.max_time or config.train.max_steps:  # an ensemble member's share of a time limit
        chosen.append(Budget(config.train.max_time, config.train.max_steps))
    trainer = build_trainer(config, model, loss_fn, task, len(train_rows), chosen, decode=decode)
    with thread_limit(threads):
        state = trainer.fit(part(train_rows), part(val_rows) if validation else None)
    if state.diverged:
        raise TrainingFailed(f"training diverged: {state.stop_reason}")
    module = trainer.eval_module
    module.eval()
    return module, state
