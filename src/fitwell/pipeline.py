"""``fitwell.train``: config -> data -> model -> loop -> test metrics -> run directory."""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from fitwell.config.load import ConfigLike, dump_config, load_config
from fitwell.config.schema import RunConfig, check_monitor
from fitwell.data.prepare import PreparedData, prepare
from fitwell.data.preprocess import Preprocessor
from fitwell.engine.averaging import WeightAverage
from fitwell.engine.batch_size import find_batch_size
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
from fitwell.engine.checkpoint import load_checkpoint
from fitwell.engine.loop import Trainer
from fitwell.engine.losses import build_loss
from fitwell.engine.lr_find import lr_range_test
from fitwell.engine.optim import build_optimizer
from fitwell.engine.regularize import WeightPenalty
from fitwell.engine.schedules import build_schedule
from fitwell.errors import ConfigError, TrainingFailed, UserError
from fitwell.evaluate.metrics import classification_metrics, probabilities, regression_metrics
from fitwell.models import MODELS
from fitwell.models.registry import model_arguments
from fitwell.track.bundle import Run
from fitwell.track.finish import finish_run, run_audit
from fitwell.track.loggers import Tracker, build_trackers
from fitwell.track.run_dir import RunDir, default_run_name, environment


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: RunConfig, data: PreparedData) -> tuple[torch.nn.Module, dict]:
    """The configured model, plus the spec (name + arguments) that rebuilds it."""
    pre = data.preprocessor
    out = 1 if data.task in ("binary", "regression") else len(pre.classes_)
    name = config.model.name
    check_input_kinds(name, pre)
    kwargs = model_arguments(name, config.model.model_dump(exclude={"name"}))
    kwargs.update(num_numeric=pre.num_numeric, cardinalities=pre.cardinalities_, out_features=out)
    if pre.inputs:
        kwargs["inputs"] = pre.input_spec()
    try:
        model = MODELS.build(name, key="model.name", **kwargs)
    except UserError:
        raise
    except ValueError as err:
        raise ConfigError(f"model ({name}): {err}") from err
    return model, {"name": name, "kwargs": kwargs}


def check_input_kinds(name: str, pre: Preprocessor) -> None:
    """The family must read every input kind the data has, and the data must have one it reads."""
    from fitwell.models import MODELS, input_kinds

    reads = input_kinds(name)
    has = ({"table"} if pre.num_numeric or pre.code_columns_ else set()) | set(pre.input_spec())
    unread = sorted(has - reads)
    if unread:
        fits = [n for n in MODELS.names() if has <= input_kinds(n)]
        raise ConfigError(f"model.name {name!r} reads {', '.join(sorted(reads))}, but the data also has"
                          f" {', '.join(unread)} input; use model.name {' or '.join(fits) or 'combiner'},"
                          " or drop those columns (data.drop)")
    if not has & reads:
        fits = [n for n in MODELS.names() if has and has <= input_kinds(n)]
        raise ConfigError(f"model.name {name!r} reads {', '.join(sorted(reads))}; the data has"
                          f" {', '.join(sorted(has)) or 'no inputs'}. Use model.name {' or '.join(fits)}")


def start_from_weights(config: RunConfig, model: torch.nn.Module, run_dir: RunDir, say) -> dict:
    """Load ``transfer.weights`` by name and shape; write ``transfer.json``; refuse a poor match."""
    from fitwell.engine.transfer import describe, load_matching, read_weights

    weights = read_weights(config.transfer.weights)
    adopt = getattr(model, "adopt_weights", None)  # a family whose own library converts its files (timm)
    report = adopt(weights) if adopt is not None else None
    if report is None:
        report = load_matching(model, weights, config.transfer.load_head)
    report["source"] = str(config.transfer.weights)
    run_dir.write_json(run_dir.path / "transfer.json", report)
    share = report["backbone_loaded_share"]
    if share < config.transfer.require:
        mismatch = "; ".join(f"{k} {a} vs {b}" for k, (a, b) in list(report["shape_mismatch"].items())[:5])
        raise ConfigError(f"transfer.weights: only {share:.0%} of the backbone's tensors matched by name and"
                          f" shape in {config.transfer.weights} (transfer.require"
                          f" {config.transfer.require:.0%}). Shape mismatches: {mismatch or 'none'}; missing"
                          f" e.g. {', '.join(report['missing'][:5]) or 'none'}. Is it the same model family"
                          " and size?")
    say(f"transfer: {describe(report)}")
    return report


def class_weight_tensor(config: RunConfig, data: PreparedData) -> torch.Tensor | None:
    if data.task == "regression":
        return None
    return class_weights_for(config.train.class_weights, data.preprocessor.classes_,
                             data.train.target.numpy())


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


def build_fabric(config: RunConfig):
    from lightning_fabric import Fabric

    try:
        fabric = Fabric(accelerator=config.train.accelerator, devices=1, precision=config.train.precision)
    except Exception as err:  # Fabric's MisconfigurationException and ValueError
        raise ConfigError(f"train.accelerator / train.precision: {err}") from err
    return fabric


def set_deterministic(enabled: bool) -> None:
    """What PyTorch needs for bit-for-bit repeatable runs (see PyTorch's reproducibility notes)."""
    import os

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def test_metrics(task: str, pre: Preprocessor, output: np.ndarray, target: np.ndarray) -> dict:
    if task == "regression":
        return regression_metrics(pre.decode_regression(target), pre.decode_regression(output.reshape(-1)))
    return classification_metrics(target, probabilities(task, output))


def calibrate(config: RunConfig, prepared: PreparedData, trainer: Trainer, final, run_dir: RunDir,
              say) -> float | None:
    """Fit the configured calibration on the validation split; save it; return the temperature."""
    if config.calibration.method == "none" or prepared.task == "regression":
        return None
    if len(prepared.val) == 0:
        raise ConfigError("calibration.method: temperature is fitted on the validation split, but"
                          " split.val is 0; give the validation split a share")
    from fitwell.evaluate.calibration import fit_temperature
    from fitwell.evaluate.metrics import expected_calibration_error

    logits = trainer.predict_output(prepared.val, module=final).cpu().numpy()
    target = prepared.val.target.numpy()
    temperature = fit_temperature(prepared.task, logits, target)
    before = expected_calibration_error(target, probabilities(prepared.task, logits))
    after = expected_calibration_error(target, probabilities(prepared.task, logits / temperature))
    run_dir.write_json(run_dir.path / "calibration.json", {
        "method": "temperature", "temperature": temperature, "fitted_on": "validation split",
        "val_ece_before": before, "val_ece_after": after})
    say(f"calibration: temperature {temperature:.3f} (validation ECE {before:.4f} -> {after:.4f})")
    return temperature


def write_reliability(run_dir: RunDir, task: str, target: np.ndarray, logits: np.ndarray,
                      temperature: float, bins: int) -> None:
    from fitwell.evaluate.metrics import reliability_curve

    run_dir.write_json(run_dir.path / "reliability.json", {
        "split": "test",
        "uncalibrated": reliability_curve(target, probabilities(task, logits), bins),
        "calibrated": reliability_curve(target, probabilities(task, logits / temperature), bins)})


def prediction_frame(prepared: PreparedData, output: np.ndarray) -> pd.DataFrame:
    """Test-row predictions keyed by the row's index in the input table."""
    pre = prepared.preprocessor
    rows = prepared.frame.index[prepared.split.test]
    target = prepared.frame[prepared.plan.target].iloc[prepared.split.test].to_numpy()
    frame = pd.DataFrame({"row": rows, "target": target})
    if prepared.task == "regression":
        frame["prediction"] = pre.decode_regression(output.reshape(-1))
        return frame
    proba = probabilities(prepared.task, output)
    frame["prediction"] = np.asarray(pre.classes_, dtype=object)[proba.argmax(axis=1)]
    for i, label in enumerate(pre.classes_):
        frame[f"proba_{label}"] = proba[:, i]
    return frame


def final_validation(state) -> dict:
    """The epoch row whose weights were kept: the best epoch when early stopping restored it."""
    if not state.history:
        return {}
    if state.best_epoch:
        return dict(state.history[state.best_epoch - 1])
    return dict(state.history[-1])


def build_callbacks(config: RunConfig, run_dir: RunDir, extra: Sequence[Callback], console) -> list[Callback]:
    """The callbacks every run uses, those named in ``train.callbacks``, then ``extra``."""
    train = config.train
    chosen: list[Callback] = [
        MetricsLogger(run_dir.history), LearningRateMonitor(),
        CheckpointWriter(run_dir.checkpoints, train.checkpoint_every, train.checkpoint_every_steps),
    ]
    stop = train.early_stopping
    if stop.enabled:
        restore = stop.restore_best and not (train.averaging and train.averaging.kind == "swa")
        chosen.append(EarlyStopping(stop.monitor, stop.resolved_mode, stop.patience, stop.min_delta, restore))
    if train.nan_guard:
        chosen.append(NanGuard())
    if train.max_time or train.max_steps:
        chosen.append(Budget(train.max_time, train.max_steps))
    if train.progress and console is not None:
        chosen.append(ProgressBar(stop.monitor, console=console))
    if train.grad_norm_every:
        chosen.append(GradientNormMonitor(train.grad_norm_every))
    chosen.extend(build_trackers(config.track, run_dir.path))
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


def resolve_auto(config: RunConfig, prepared: PreparedData, model: torch.nn.Module, loss_fn,
                 device: torch.device, run_dir: RunDir, say) -> None:
    """Replace ``batch_size: auto`` and ``lr: auto`` by measured values (batch size first)."""
    train = config.train
    lr = train.lr if train.lr != "auto" else 1e-3
    if train.batch_size == "auto":
        found = find_batch_size(model, loss_fn, lambda m: _optimizer(config, m, lr), prepared.train, device,
                                train.batch_size_memory_cap)
        train.batch_size = found.batch_size
        run_dir.write_json(run_dir.path / "batch_size.json", {"batch_size": found.batch_size,
                           "reason": found.reason, "tried": found.tried})
        say(f"batch_size auto -> {found.batch_size}: {found.reason}")
    if train.lr == "auto":
        result = lr_range_test(model, loss_fn, lambda m, rate: _optimizer(config, m, rate), prepared.train,
                               train.batch_size, seed=config.seed, device=device)
        result.save(run_dir.path)
        train.lr = result.suggestion
        say(f"lr auto -> {result.suggestion:.3g} (range test plot: {run_dir.path / 'lr_find.png'})")


def build_run_loss(config: RunConfig, prepared: PreparedData):
    """The loss ``train.*`` configures, with class weights from the training rows."""
    train = config.train
    return build_loss(train.loss, prepared.task, class_weight_tensor(config, prepared),
                      train.huber_delta, train.focal_gamma, train.label_smoothing)


def _optimizer(config: RunConfig, module: torch.nn.Module, lr: float):
    train = config.train
    return build_optimizer(train.optimizer, module, lr, train.weight_decay, train.momentum, train.nesterov)


def build_trainer(config: RunConfig, model: torch.nn.Module, loss_fn, task: str, num_train_rows: int,
                  callbacks: Sequence[Callback], *, fabric=None, decode=None, run_dir=None,
                  inputs: dict | None = None) -> Trainer:
    """The Trainer ``train.*`` configures: optimizer (backbone/head rates from ``transfer``),
    schedule, penalties, averaging, clipping, and ``augment`` on the training batches."""
    from fitwell.engine.transfer import discriminative_groups

    train_cfg = config.train
    optimizer = _optimizer(config, model, train_cfg.lr)
    discriminative_groups(optimizer, model, config.transfer.backbone_lr)
    augment = None
    if config.augment.enabled:
        from fitwell.data.augment import BatchAugment

        augment = BatchAugment(config.augment, inputs or {}, task)
    batch_size = train_cfg.batch_size
    trainer_steps = -(-num_train_rows // batch_size)
    steps_per_epoch = -(-trainer_steps // train_cfg.accumulate_batches)
    schedule = build_schedule(train_cfg.schedule, optimizer, steps_per_epoch, train_cfg.epochs, train_cfg.lr)
    averaging = None
    if train_cfg.averaging is not None:
        avg = train_cfg.averaging
        averaging = WeightAverage(model, optimizer, avg.kind, avg.decay, avg.start_epoch, avg.swa_lr)
    return Trainer(model, loss_fn, optimizer, task=task, epochs=train_cfg.epochs,
                   batch_size=batch_size, seed=config.seed, callbacks=callbacks, fabric=fabric,
                   schedule=schedule, penalty=WeightPenalty(model, train_cfg.l1, train_cfg.l2),
                   averaging=averaging, clip_grad_norm=train_cfg.clip_grad_norm,
                   clip_grad_value=train_cfg.clip_grad_value,
                   accumulate_batches=train_cfg.accumulate_batches, decode=decode,
                   config=config.model_dump(mode="json"), device_data=train_cfg.device_data,
                   run_dir=run_dir, augment=augment)


def train(
    config: ConfigLike | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    data: pd.DataFrame | None = None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    console=None,
    score_test: bool = True,
    fold: tuple[int, int] | None = None,
    merge_val: bool = False,
    cv: tuple[int, int, int] | None = None,
) -> Run:
    """Train a model from a config and return the finished run.

    Args:
        config: a YAML path, a dict of sections or a RunConfig.
        overrides: ``{"train.lr": 1e-3}`` or ``["train.lr=1e-3"]``.
        data: a DataFrame to use instead of ``data.source``.
        resume: a run directory to continue from its last checkpoint.
        callbacks: extra Callback objects.
        console: a Rich console for progress and messages; None prints nothing.
        score_test: score the test split at the end (tuning trials pass False: the test split
            is never looked at while tuning).
        fold: ``(k, i)``: train on fold i of k over train+validation (cross-validated tuning).
        merge_val: train on train+validation together (final retraining; no early stopping).
        cv: ``(folds, fold, repeat)``: hold out fold ``fold`` of a k-fold over all rows as the
            test part (``fitwell cv``).

    Returns:
        The finished Run: ``run.metrics`` (test split), ``run.predict(frame)``, ``run.path``.

    Raises:
        UserError: (ConfigError, DataError) bad config, data or arguments, with the fix.
        TrainingFailed: training diverged; the last good checkpoint is kept.

    Example:
        >>> run = train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
    """
    say = (lambda text: console.print(text, soft_wrap=True)) if console is not None else (lambda text: None)
    started = time.perf_counter()
    checkpoint = None
    if resume is not None:
        run_dir = RunDir(resume)
        if not run_dir.config.exists():
            raise UserError(f"{run_dir.path} is not a fitwell run directory (no config.yaml)")
        if run_dir.metrics.exists():
            raise UserError(f"{run_dir.path} already finished training; nothing to resume")
        config = load_config(run_dir.config)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                checkpoint, ckpt_path = load_checkpoint(run_dir.checkpoints)
            for warning in caught:
                say(f"[yellow]warning:[/] {warning.message}")
        except FileNotFoundError as err:
            raise UserError(f"cannot resume {run_dir.path}: {err}; start a new run instead") from err
        saved = checkpoint["trainer"]
        say(f"resuming [bold]{run_dir.path}[/] from {ckpt_path.name} (epoch {saved['epoch']},"
            f" batch {saved.get('batch_in_epoch', 0)})")
    else:
        stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
        config = load_config(config, overrides)
        name = config.track.name or default_run_name(stem)
        run_dir = RunDir.create(config.track.runs_dir, name, config.track.overwrite)

    set_deterministic(config.train.deterministic)
    seed_everything(config.seed)
    loaded = Preprocessor.load(run_dir.preprocess) if checkpoint is not None else None
    prepared = prepare(config, data, preprocessor=loaded, fold=fold, merge_val=merge_val, cv=cv)
    config.data.task = prepared.task
    config.data.target = prepared.plan.target
    for note in prepared.notes:
        say(f"[yellow]data:[/] {note}")
    sizes = prepared.split.sizes()
    say(f"task [bold]{prepared.task}[/], {len(prepared.frame)} rows -> train {sizes['train']},"
        f" val {sizes['val']}, test {sizes['test']}")
    if checkpoint is None and score_test:
        run_audit(config, prepared, run_dir, console, say)
    resampled = prepared.resample(config)
    if resampled is not None:
        say(f"resampled the training split ({resampled['method']}): class counts {resampled['before']}"
            f" -> {resampled['after']}")
    synthetic = prepared.synthesize(config)
    if synthetic is not None:
        say(f"data.synthetic ({synthetic['method']}): added {synthetic['rows_added']} generated rows to the"
            f" training split ({synthetic['rows_before']} -> {synthetic['rows_after']}); validation and test"
            " are untouched")

    model, spec = build_model(config, prepared)
    if checkpoint is None and config.transfer.weights:
        start_from_weights(config, model, run_dir, say)
    loss_fn = build_run_loss(config, prepared)
    chosen = build_callbacks(config, run_dir, callbacks, console)
    if config.transfer.freeze != "none":
        from fitwell.engine.transfer import BackboneFreezing

        chosen.append(BackboneFreezing(model, config.transfer.freeze, config.transfer.unfreeze_every))
    check_callback_monitors(chosen, prepared.task)
    fabric = build_fabric(config)
    if checkpoint is None:
        resolve_auto(config, prepared, model, loss_fn, fabric.device, run_dir, say)
        run_dir.config.write_text(dump_config(config))
        run_dir.write_json(run_dir.env, environment(config.seed))
        run_dir.write_json(run_dir.data_report, prepared.summary())
        prepared.preprocessor.save(run_dir.preprocess)
    run_dir.write_json(run_dir.model_spec, spec)

    trainer = build_trainer(config, model, loss_fn, prepared.task, len(prepared.train), chosen,
                            fabric=fabric, decode=prepared.preprocessor.decode_regression,
                            run_dir=run_dir.path, inputs=prepared.preprocessor.input_spec())
    trackers = [cb for cb in chosen if isinstance(cb, Tracker)]
    state = trainer.fit(prepared.train, prepared.val, checkpoint=checkpoint)
    if state.diverged:
        findings = finish_run(config, prepared, trainer, state, run_dir, {}, None, trackers, console, say,
                              status="FAILED", report=True)
        advice = next((f" The doctor suggests: {f.fix}." for f in findings if f.fix), "")
        raise TrainingFailed(f"{state.stop_reason}.{advice} Run directory: {run_dir.path}")
    if state.stop_reason:
        say(state.stop_reason)

    final = trainer.eval_module
    weights = {k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}
    save_file(weights, run_dir.model)
    summary = {"task": prepared.task, "epochs": state.epoch, "steps": state.step,
               "best_epoch": state.best_epoch, "stop_reason": state.stop_reason, "split": sizes,
               "validation": final_validation(state)}
    temperature = calibrate(config, prepared, trainer, final, run_dir, say)
    predictions = None
    if score_test:
        output = trainer.predict_output(prepared.test, module=final)
        output = output.cpu().numpy()
        if temperature is not None:
            target = prepared.test.target.numpy()
            summary["test_uncalibrated"] = test_metrics(prepared.task, prepared.preprocessor, output, target)
            write_reliability(run_dir, prepared.task, target, output, temperature, config.calibration.bins)
            output = output / temperature
        summary["test"] = test_metrics(prepared.task, prepared.preprocessor, output,
                                       prepared.test.target.numpy())
        predictions = prediction_frame(prepared, output)  # the report's plots and `fitwell cv` read it
        predictions.to_csv(run_dir.test_predictions, index=False)
    summary["duration_s"] = round(time.perf_counter() - started, 3)
    run_dir.write_json(run_dir.metrics, summary)
    run = Run(run_dir.path)
    if score_test and config.explain.permutation:
        from fitwell.evaluate.explain import permutation_importance

        raw = prepared.frame.iloc[prepared.split.test]
        run_dir.write_json(run_dir.path / "importance.json",
                           permutation_importance(run, raw, config.explain.repeats, config.seed))
    finish_run(config, prepared, trainer, state, run_dir, summary, predictions, trackers, console, say,
               report=score_test)
    return run


def find_lr(config: ConfigLike, overrides=None, out: str | Path | None = None):
    """``fitwell lr-find``: the range test on the configured model and data; returns
    (LRFindResult, plot path)."""
    stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
    config = load_config(config, overrides)
    seed_everything(config.seed)
    prepared = prepare(config)
    model, _ = build_model(config, prepared)
    train_cfg = config.train
    loss_fn = build_run_loss(config, prepared)
    batch_size = 128 if train_cfg.batch_size == "auto" else train_cfg.batch_size
    result = lr_range_test(model, loss_fn, lambda m, rate: _optimizer(config, m, rate), prepared.train,
                           batch_size, seed=config.seed)
    if not result.lrs:
        raise TrainingFailed("the range test diverged at its first step; check the data")
    folder = Path(out) if out is not None else Path(config.track.runs_dir)
    return result, result.save(folder, f"lr_find-{stem}")
