"""``fitwell.train``: config -> data -> model -> loop -> test metrics -> run directory."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from fitwell.config.load import ConfigLike, dump_config, load_config
from fitwell.config.schema import RunConfig
from fitwell.data.prepare import PreparedData, prepare
from fitwell.data.preprocess import Preprocessor
from fitwell.errors import ConfigError, UserError
from fitwell.evaluate.metrics import classification_metrics, probabilities, regression_metrics
from fitwell.models import MODELS
from fitwell.serve.bundle import Run
from fitwell.track.run_dir import RunDir, default_run_name, environment
from fitwell.train.callbacks import Callback, CheckpointWriter, EarlyStopping, MetricsLogger, ProgressBar
from fitwell.train.checkpoint import load_checkpoint
from fitwell.train.loop import Trainer
from fitwell.train.losses import build_loss
from fitwell.train.optim import build_optimizer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: RunConfig, data: PreparedData) -> tuple[torch.nn.Module, dict]:
    """The configured model, plus the spec (name + arguments) that rebuilds it."""
    pre = data.preprocessor
    out = 1 if data.task in ("binary", "regression") else len(pre.classes_)
    kwargs = config.model.model_dump(exclude={"name"})
    kwargs.update(num_numeric=pre.num_numeric, cardinalities=pre.cardinalities_, out_features=out)
    return MODELS.build(config.model.name, key="model.name", **kwargs), {
        "name": config.model.name, "kwargs": kwargs}


def class_weight_tensor(config: RunConfig, data: PreparedData) -> torch.Tensor | None:
    setting = config.train.class_weights
    if setting is None or data.task == "regression":
        return None
    classes = data.preprocessor.classes_
    if setting == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        y = data.train.target.numpy()
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


def build_fabric(config: RunConfig):
    from lightning_fabric import Fabric

    accelerator = config.train.accelerator
    try:
        fabric = Fabric(accelerator=accelerator, devices=1, precision=config.train.precision)
    except Exception as err:  # Fabric's MisconfigurationException and ValueError
        raise ConfigError(f"train.accelerator / train.precision: {err}") from err
    return fabric


def test_metrics(task: str, pre: Preprocessor, output: np.ndarray, target: np.ndarray) -> dict:
    if task == "regression":
        return regression_metrics(pre.decode_regression(target), pre.decode_regression(output.reshape(-1)))
    return classification_metrics(target, probabilities(task, output))


def train(
    config: ConfigLike | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    data: pd.DataFrame | None = None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    console=None,
) -> Run:
    """Train a model from a config and return the finished run.

    Args:
        config: a YAML path, a dict of sections or a RunConfig.
        overrides: ``{"train.lr": 1e-3}`` or ``["train.lr=1e-3"]``.
        data: a DataFrame to use instead of ``data.source``.
        resume: a run directory to continue from its last checkpoint.
        callbacks: extra Callback objects.
        console: a Rich console for progress and messages; None prints nothing.

    Returns:
        The finished Run: ``run.metrics`` (test split), ``run.predict(frame)``, ``run.path``.

    Raises:
        UserError: (ConfigError, DataError) bad config, data or arguments, with the fix.

    Example:
        >>> run = train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
    """
    say = (lambda text: console.print(text)) if console is not None else (lambda text: None)
    checkpoint = None
    if resume is not None:
        run_dir = RunDir(resume)
        if not run_dir.config.exists():
            raise UserError(f"{run_dir.path} is not a fitwell run directory (no config.yaml)")
        if run_dir.metrics.exists():
            raise UserError(f"{run_dir.path} already finished training; nothing to resume")
        config = load_config(run_dir.config)
        try:
            checkpoint, ckpt_path = load_checkpoint(run_dir.checkpoints)
        except FileNotFoundError as err:
            raise UserError(f"cannot resume {run_dir.path}: {err}; start a new run instead") from err
        epoch = checkpoint["trainer"]["epoch"]
        say(f"resuming [bold]{run_dir.path}[/] from {ckpt_path.name} (epoch {epoch})")
    else:
        stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
        config = load_config(config, overrides)
        name = config.track.name or default_run_name(stem)
        run_dir = RunDir.create(config.track.runs_dir, name, config.track.overwrite)

    seed_everything(config.seed)
    loaded = Preprocessor.load(run_dir.preprocess) if checkpoint is not None else None
    prepared = prepare(config, data, preprocessor=loaded)
    config.data.task = prepared.task
    config.data.target = prepared.plan.target
    for note in prepared.notes:
        say(f"[yellow]data:[/] {note}")
    sizes = prepared.split.sizes()
    say(f"task [bold]{prepared.task}[/], {len(prepared.frame)} rows -> train {sizes['train']},"
        f" val {sizes['val']}, test {sizes['test']}")

    if checkpoint is None:
        run_dir.config.write_text(dump_config(config))
        run_dir.write_json(run_dir.env, environment(config.seed))
        run_dir.write_json(run_dir.data_report, prepared.summary())
        prepared.preprocessor.save(run_dir.preprocess)

    model, spec = build_model(config, prepared)
    run_dir.write_json(run_dir.model_spec, spec)
    loss_fn = build_loss(config.train.loss, prepared.task, class_weight_tensor(config, prepared),
                         config.train.huber_delta)
    optimizer = build_optimizer(config.train.optimizer, model, config.train.lr,
                                config.train.weight_decay, config.train.momentum)
    stop = config.train.early_stopping
    monitor = stop.monitor
    chosen: list[Callback] = [MetricsLogger(run_dir.history),
                              CheckpointWriter(run_dir.checkpoints, config.train.checkpoint_every)]
    if stop.enabled:
        chosen.append(EarlyStopping(monitor, stop.resolved_mode, stop.patience, stop.min_delta,
                                    stop.restore_best))
    if config.train.progress and console is not None:
        chosen.append(ProgressBar(monitor, console=console))
    chosen.extend(callbacks)

    fabric = build_fabric(config)
    trainer = Trainer(model, loss_fn, optimizer, task=prepared.task, epochs=config.train.epochs,
                      batch_size=config.train.batch_size, seed=config.seed, callbacks=chosen,
                      fabric=fabric, decode=prepared.preprocessor.decode_regression,
                      config=config.model_dump(mode="json"), device_data=config.train.device_data)
    state = trainer.fit(prepared.train, prepared.val, checkpoint=checkpoint)
    if state.stop_reason:
        say(state.stop_reason)

    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, run_dir.model)
    output = trainer.predict_output(prepared.test.numeric, prepared.test.codes).cpu().numpy()
    scores = test_metrics(prepared.task, prepared.preprocessor, output, prepared.test.target.numpy())
    run_dir.write_json(run_dir.metrics, {
        "test": scores, "task": prepared.task, "epochs": state.epoch, "steps": state.step,
        "best_epoch": state.best_epoch, "stop_reason": state.stop_reason, "split": sizes,
    })
    return Run(run_dir.path)
