"""``fitwell.train``: one supervised run told as a short story, on the lifecycle of ``run.py``.

config -> data -> model -> loop -> test metrics -> run directory.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fitwell.config.load import ConfigLike
from fitwell.engine.build import (
    build_callbacks,
    build_fabric,
    build_run_loss,
    build_run_optimizer,
    build_trainer,
    check_callback_monitors,
    device_of,
    measure_auto,
    seed_everything,
    training_threads,
)
from fitwell.engine.callbacks import Callback
from fitwell.engine.checkpoint import load_checkpoint
from fitwell.engine.lr_find import lr_range_test
from fitwell.engine.threads import thread_limit
from fitwell.errors import ConfigError, TrainingFailed, UserError
from fitwell.evaluate.scoring import (
    calibrate,
    final_validation,
    prediction_frame,
    test_metrics,
    write_reliability,
)
from fitwell.files import write_json, write_with
from fitwell.models.build import build_model
from fitwell.run import (
    RunStart,
    config_stem,
    console_say,
    finish_run_directory,
    guard,
    load_run_config,
    no_test_split,
    open_run,
    permutation_importance,
    resumed_config,
    start_run,
)
from fitwell.track.bundle import Run
from fitwell.track.finish import finish_run
from fitwell.track.loggers import Tracker, build_trackers
from fitwell.track.run_dir import RunDir


def start_from_weights(start: RunStart, model: torch.nn.Module) -> dict:
    """Load ``transfer.weights`` by name and shape; write ``transfer.json``; refuse a poor match."""
    from fitwell.engine.transfer import describe, load_matching, read_weights

    transfer = start.config.transfer
    weights = read_weights(transfer.weights)
    adopt = getattr(model, "adopt_weights", None)  # a family whose own library converts its files (timm)
    report = adopt(weights) if adopt is not None else None
    if report is None:
        report = load_matching(model, weights, transfer.load_head)
    report["source"] = str(transfer.weights)
    share = report["backbone_loaded_share"]
    if share < transfer.require:
        mismatch = "; ".join(f"{k} {a} vs {b}" for k, (a, b) in list(report["shape_mismatch"].items())[:5])
        raise ConfigError(f"transfer.weights: only {share:.0%} of the backbone's tensors matched by name and"
                          f" shape in {transfer.weights} (transfer.require {transfer.require:.0%}). Shape"
                          f" mismatches: {mismatch or 'none'}; missing e.g."
                          f" {', '.join(report['missing'][:5]) or 'none'}. Is it the same model family"
                          " and size?")
    start.say(f"transfer: {describe(report)}")
    return report


def pretrain(start: RunStart, model: torch.nn.Module, spec: dict) -> dict:
    """``pretrain``: the network's backbone learns the rows' numbers first (fitwell.engine.pretrain)."""
    from fitwell.engine.pretrain import pretrain_backbone
    from fitwell.models.registry import rebuild_model

    def network(width: int):
        torch.manual_seed(start.config.seed)
        return rebuild_model({"name": spec["name"], "kwargs": {**spec["kwargs"], "out_features": width}})

    prepared = start.prepared
    return pretrain_backbone(start.config, prepared.preprocessor, model, prepared.train, prepared.val,
                             start.run_dir.path / "pretrain", network, start.console, start.say)


def resume_from(path: str | Path, say) -> tuple[RunDir, dict]:
    """The run directory (checked by ``run.resumed_config``) and its newest readable checkpoint."""
    run_dir = RunDir(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            checkpoint, ckpt_path = load_checkpoint(run_dir.checkpoints)
        for warning in caught:
            say(f"[yellow]warning:[/] {warning.message}")
    except FileNotFoundError as err:
        raise UserError(f"cannot resume {run_dir.path}: {err}; start it again: fitwell train"
                        f" {run_dir.config}") from err
    saved = checkpoint["trainer"]
    say(f"resuming [bold]{run_dir.path}[/] from {ckpt_path.name} (epoch {saved['epoch']},"
        f" batch {saved.get('batch_in_epoch', 0)})")
    return run_dir, checkpoint


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
    started_at: float | None = None,
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
        started_at: a ``time.monotonic()`` reading the run's clock (``train.max_time``,
            ``duration_s``) counts from; default now. The CLI passes the command's start.

    Returns:
        The finished Run: ``run.metrics`` (test split), ``run.predict(frame)``, ``run.path``.

    Raises:
        UserError: (ConfigError, DataError) bad config, data or arguments, with the fix.
        TrainingFailed: training diverged; the last good checkpoint is kept.

    Example:
        >>> run = train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
    """
    resolved = resumed_config(resume, overrides) if resume is not None else load_run_config(config, overrides)
    fabric = join_processes(resolved)
    with ExitStack() as stack:
        scratch = None
        if fabric is not None and fabric.global_rank:  # only rank 0 writes the run directory and prints
            scratch, console = RunDir(stack.enter_context(tempfile.TemporaryDirectory())), None
        checkpoint, run_dir, loaded = None, None, None
        if resume is not None:
            run_dir, checkpoint = resume_from(resume, console_say(console))
            loaded = run_dir.load_preprocessor()
        start = start_run(resolved, stem=config_stem(config, "run"), data=data, console=console,
                          run_dir=scratch or run_dir, preprocessor=loaded, started_at=started_at, fold=fold,
                          merge_val=merge_val, cv=cv)
        start.fabric = fabric
        with guard(start):
            return fit_and_score(start, callbacks, checkpoint, score_test)


def join_processes(config):
    """This process's Fabric when a launcher started the run on several processes; None on one."""
    from fitwell.engine.distributed import join, launched_processes, wants_processes

    if launched_processes() is None:
        wanted = wants_processes(config.train)
        if wanted > 1:
            raise ConfigError(f"train.devices x train.num_nodes = {wanted} processes, started by nobody: run"
                              " it with fitwell train (or fitwell.train), which starts them, or under"
                              " torchrun; cross-validation folds and a train+validation refit train on"
                              " one process each")
        return None
    return join(config.train)


def fit_and_score(start: RunStart, extra: Sequence[Callback], checkpoint, score_test: bool) -> Run:
    """Everything after the data is prepared: build, validate, open the directory, fit, score."""
    prepared = start.prepared
    for line in prepared.change_training_rows(start.config):
        start.say(line)
    if start.config.privacy is not None and start.config.model.batch_norm:  # privacy.fix_batch_norm
        start.resolve({"model.batch_norm": False})
        start.say("privacy: model.batch_norm turned off (BatchNorm mixes the rows of a batch)")
    numbers = (prepared.train if prepared.sample_train is None else prepared.sample_train).numeric  # PLE bins
    model, spec = build_model(start.config, prepared.preprocessor, prepared.task, numbers)
    pre = prepared.preprocessor
    loss_fn = build_run_loss(start.config, prepared.task, pre.classes_, prepared.train.target.numpy())
    fabric = start.fabric or build_fabric(start.config)
    rank = 0 if start.fabric is None else start.fabric.global_rank
    chosen = build_callbacks(start.config, start.run_dir.path, extra, start.console, start.started_at)
    check_callback_monitors(chosen, prepared.task)
    if checkpoint is None:
        open_run(start, audit=score_test)
        if start.config.transfer.weights:
            write_json(start.run_dir.path / "transfer.json", start_from_weights(start, model))
        if start.config.pretrain is not None:
            write_json(start.run_dir.path / "pretrain.json", pretrain(start, model, spec))
        measured = {} if rank else measure_auto(start.config, model, loss_fn, prepared.train,
                                                device_of(fabric), start.run_dir.path, start.say)
        if start.fabric is not None:  # rank 0 measured; every rank trains with its values
            measured = start.fabric.broadcast(measured, src=0)
        if measured:  # the config keeps the measured lr / batch_size
            start.resolve(measured)
            open_run_config(start)
    write_json(start.run_dir.model_spec, spec)
    trackers = [] if rank else build_trackers(start.config.track, start.run_dir.path)
    if start.config.transfer.freeze != "none":
        from fitwell.engine.transfer import BackboneFreezing

        transfer = start.config.transfer
        chosen.append(BackboneFreezing(model, transfer.freeze, transfer.unfreeze_every))
    threads, why, following = training_threads(start.config, model, prepared.train, device_of(fabric))
    trainer = build_trainer(start.config, model, loss_fn, prepared.task, len(prepared.train),
                            [*chosen, *following, *trackers], fabric=fabric, decode=pre.decode_regression,
                            run_dir=start.run_dir.path, inputs=pre.input_spec(),
                            privacy=private_training(start.config, pre, len(prepared.train)))
    if trainer.privacy is not None:
        start.say(trainer.privacy.plan.describe())
    start.training_started = True
    start.say(f"threads: {threads} ({why}{'; fewer while other work holds the cores' if following else ''})")
    with thread_limit(threads):
        state = trainer.fit(prepared.train, prepared.val, checkpoint=checkpoint)
    if rank:  # rank 0 scores, reports and finishes the run directory
        return None
    if state.diverged:
        findings = finish_run(start.config, prepared, trainer, state, start.run_dir, {}, None, trackers,
                              start.console, start.say, status="FAILED", report=True)
        advice = next((f" The doctor suggests: {f.fix}." for f in findings if f.fix), "")
        raise TrainingFailed(f"{state.stop_reason}.{advice} Run directory: {start.run_dir.path}")
    if state.stop_reason:
        start.say(state.stop_reason)
    return score_and_finish(start, trainer, state, trackers, score_test)


def private_training(config, pre, rows: int):
    """DP-SGD for a run with a ``privacy`` section, on what its preprocessing left of the budget
    (saved with the preprocessor: a resumed run calibrates the same noise); None otherwise."""
    if config.privacy is None:
        return None
    from fitwell.privacy.dpsgd import PrivateTraining, plan_privacy

    spent = (pre.privacy_["epsilon"], pre.privacy_["delta"]) if pre.privacy_ else (0.0, 0.0)
    if config.privacy.release_metric:  # a tuning trial's noised validation score
        spent = (spent[0] + config.privacy.score_epsilon, spent[1])
    if config.privacy.mechanism in ("dp-ftrl", "blt"):
        from fitwell.config.privacy import resolve_delta
        from fitwell.privacy.blt import BufferedNoise, plan_blt
        from fitwell.privacy.ftrl import TreeAggregationTraining, plan_ftrl

        delta = resolve_delta(config.privacy.delta, rows) - spent[1]
        make, kind = (plan_ftrl, TreeAggregationTraining) if config.privacy.mechanism == "dp-ftrl" else \
            (plan_blt, BufferedNoise)
        plan = make(config, rows, config.privacy.epsilon - spent[0], delta)
        plan.preprocessing = spent
        return kind(plan, config.seed, plan.steps // config.train.epochs)
    return PrivateTraining(plan_privacy(config, rows, spent), config.seed)


def release_validation(start: RunStart, trainer, final, summary: dict) -> None:
    """A private tuning trial's score: its validation metric released with noise."""
    from fitwell.privacy.select import release_score

    privacy, prepared = start.config.privacy, start.prepared
    if not privacy.release_metric or not len(prepared.val):
        return
    output = trainer.predict_output(prepared.val, module=final).cpu().numpy()
    value = release_score(privacy.release_metric, prepared.task, output, prepared.val.target.numpy(),
                          privacy.score_epsilon)
    summary["privacy"]["validation"] = {privacy.release_metric: value}


def score_saved_run(path, data=None) -> tuple[dict, dict]:
    """Score a finished run's test split once and record it in its metrics.json (a private
    search keeps its best trial as trained). Returns the test metrics and the run's privacy."""
    from fitwell.data.prepare import prepare
    from fitwell.data.tensors import predict_in_chunks
    from fitwell.track.bundle import Run

    run = Run(path)
    prepared = prepare(run.config, data, preprocessor=run.preprocessor)
    output = predict_in_chunks(run.model, prepared.test, chunk=4096).numpy()
    summary = run.summary
    summary["test"] = test_metrics(run.task, run.preprocessor, output, prepared.test.target.numpy())
    write_json(run.dir.metrics, summary)
    return summary["test"], summary.get("privacy") or {}


def open_run_config(start: RunStart) -> None:
    """The config with measured ``auto`` values is the one the run keeps."""
    from fitwell.config.load import dump_config
    from fitwell.files import write_text

    write_text(start.run_dir.config, dump_config(start.config))


def score_and_finish(start: RunStart, trainer, state, trackers: list[Tracker], score_test: bool) -> Run:
    """Save the kept weights, calibrate, score the test split once, write the run's last files."""
    from safetensors.torch import save_file

    prepared, run_dir = start.prepared, start.run_dir
    final = trainer.eval_module
    weights = {k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}
    write_with(run_dir.model, lambda tmp: save_file(weights, tmp))
    sizes = prepared.sizes()
    summary = {"task": prepared.task, "epochs": state.epoch, "steps": state.step,
               "best_epoch": state.best_epoch, "stop_reason": state.stop_reason, "split": sizes,
               "validation": final_validation(state)}
    if trainer.privacy is not None:
        spent = summary["privacy"] = trainer.privacy.summary(prepared.preprocessor.privacy_)
        release_validation(start, trainer, final, summary)
        start.say(f"privacy: epsilon {spent['epsilon']:g} spent of {spent['target_epsilon']:g}"
                  f" (delta {spent['delta']:.0e}, {spent['steps']} steps)")
    temperature = calibrate(start.config, prepared, trainer, final, run_dir.path, start.say)
    predictions = None
    if score_test and not sizes["test"]:
        start.say(no_test_split(run_dir.path))
    scored = score_test and sizes["test"] > 0
    if scored:
        output = trainer.predict_output(prepared.test, module=final).cpu().numpy()
        target = prepared.test.target.numpy()
        if temperature is not None:
            summary["test_uncalibrated"] = test_metrics(prepared.task, prepared.preprocessor, output, target)
            write_reliability(run_dir.path, prepared.task, target, output, temperature,
                              start.config.calibration.bins)
            output = output / temperature
        summary["test"] = test_metrics(prepared.task, prepared.preprocessor, output, target)
        if prepared.task == "regression":
            from fitwell.evaluate.metrics import mape_undefined

            raw = prepared.frame[prepared.plan.target].iloc[prepared.split.test].to_numpy(dtype=float)
            note = mape_undefined(raw)
            if note:
                summary["metric_notes"] = [note]
                start.say(note)
        predictions = report_predictions(prepared, trainer, final, output, temperature)
        write_with(run_dir.test_predictions, lambda tmp: predictions.to_csv(tmp, index=False))
    summary["duration_s"] = round(time.monotonic() - start.started_at, 3)
    write_json(run_dir.metrics, summary)
    run = Run(run_dir.path, verify=False)
    if scored:
        permutation_importance(start, run, prepared.split.test)
    finish_run(start.config, prepared, trainer, state, run_dir, summary, predictions, trackers, start.console,
               start.say, report=score_test)
    finish_run_directory(start)
    return run


def report_predictions(prepared, trainer, final, output, temperature):
    """The test predictions the report plots and ``fitwell cv`` reads: of the test rows, or of the
    sample's test rows when the table was streamed (``output`` covers all of them)."""
    if prepared.sample_test is None:
        return prediction_frame(prepared, output)
    sample = trainer.predict_output(prepared.sample_test, module=final).cpu().numpy()
    return prediction_frame(prepared, sample if temperature is None else sample / temperature)


def find_lr(config: ConfigLike, overrides=None, out: str | Path | None = None):
    """``fitwell lr-find``: the range test on the configured model and data; returns
    (LRFindResult, plot path)."""
    from fitwell.data.prepare import prepare

    stem = config_stem(config, "run")
    config = load_run_config(config, overrides)
    seed_everything(config.seed)
    prepared = prepare(config)
    model, _ = build_model(config, prepared.preprocessor, prepared.task, prepared.train.numeric)
    loss_fn = build_run_loss(config, prepared.task, prepared.preprocessor.classes_,
                             prepared.train.target.numpy())
    batch_size = 128 if config.train.batch_size == "auto" else config.train.batch_size
    result = lr_range_test(model, loss_fn, lambda m, rate: build_run_optimizer(config, m, rate),
                           prepared.train, batch_size, seed=config.seed)
    if not result.lrs:
        raise TrainingFailed("the range test diverged at its first step; check the data")
    folder = Path(out) if out is not None else Path(config.track.runs_dir)
    return result, result.save(folder, f"lr_find-{stem}")

