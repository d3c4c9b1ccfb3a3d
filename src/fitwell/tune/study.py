"""``fitwell tune``: an Optuna study whose trials are real fitwell runs.

Each trial trains ``runs/<study>/trial-<n>/`` with the sampled overrides and never looks at the
test split. The study lives in Optuna storage (SQLite in the study folder by default, any RDB URL
for many machines, with heartbeats so a killed trial is retried, not lost); re-running the same
command resumes it. At the end the best configuration is retrained and scored on the test split
once, in ``runs/<study>/best/``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from fitwell.config.load import ConfigLike, dump_config
from fitwell.config.schema import RunConfig, check_monitor, resolve_mode
from fitwell.config.tasks import UNSUPERVISED
from fitwell.errors import ConfigError
from fitwell.files import write_text
from fitwell.run import config_stem, console_say, load_run_config, owned_folder
from fitwell.tune.pruning import PruneOnPlateau, open_storage, pruning_on_processes
from fitwell.tune.space import build_pruner, build_sampler, check_space, suggest
from fitwell.tune.task_trials import check_task_metrics, refit_best, task_trial

EXTRA_OBJECTIVES = ("num_params", "latency_ms")


def metrics_of(config: RunConfig) -> list[str]:
    metric = config.tune.metric
    return list(metric) if isinstance(metric, list) else [metric]


def directions_of(config: RunConfig) -> list[str]:
    names = metrics_of(config)
    direction = config.tune.direction
    if isinstance(direction, list):
        if len(direction) != len(names):
            raise ConfigError(f"tune.direction: {len(direction)} directions for {len(names)} metrics")
        return direction
    if direction != "auto":
        return [direction] * len(names)
    return ["minimize" if name in EXTRA_OBJECTIVES or resolve_mode("auto", name) == "min" else "maximize"
            for name in names]


LOSS_KEYS = ("train.loss", "train.label_smoothing", "train.focal_gamma", "train.huber_delta",
             "train.class_weights")


def check_tune(config: RunConfig, task: str | None = None) -> None:
    if config.tune is None:
        raise ConfigError("this config has no 'tune' section; add tune.space (and tune.metric)")
    if not config.tune.space:
        raise ConfigError("tune.space is empty; name at least one dotted config key to search")
    check_space(config)
    several = config.train.devices * config.train.num_nodes > 1
    if several and (config.tune.cv or config.tune.retrain_on == "train_val"):
        raise ConfigError("train.devices: a trial may run on several processes, but not in folds (tune.cv) or"
                          " refitted on train+validation (tune.retrain_on: train_val); drop one of them")
    changes_loss = [key for key in config.tune.space if key in LOSS_KEYS]
    if changes_loss and "val_loss" in metrics_of(config):
        raise ConfigError(
            f"tune.metric: val_loss is not comparable between trials when tune.space changes the loss"
            f" itself ({', '.join(changes_loss)}); tune a task metric instead, such as val_rmse, val_r2,"
            " val_accuracy or val_roc_auc")
    if config.ensemble is not None:
        if config.ensemble.refit_on == "train_val":
            raise ConfigError("tune with ensemble.refit_on: train_val: trials are scored on the validation"
                              " split, which that setting trains on; set ensemble.refit_on: train to tune")
        extra = [n for n in metrics_of(config) if n in EXTRA_OBJECTIVES]
        single = "tune.cv" if config.tune.cv else "tune.retrain_on: train_val" \
            if config.tune.retrain_on == "train_val" else (extra[0] if extra else None)
        if single:
            raise ConfigError(f"tune with an ensemble section: {single} is for single models; an"
                              " ensemble trial is scored on the validation split and refitted as it was")
        if task is not None:
            known = ensemble_metric_names(task)
            for name in metrics_of(config):
                if name not in known:
                    raise ConfigError(f"tune.metric: {name!r} is not reported by an ensemble for a {task}"
                                      f" task; reported: {', '.join(known)}")
        return
    if config.data.task in UNSUPERVISED:
        check_task_metrics(config.data.task, metrics_of(config))
        return
    if task is not None:
        for i, name in enumerate(metrics_of(config)):
            if name not in EXTRA_OBJECTIVES:
                try:
                    key = "tune.metric" + (f".{i}" if len(metrics_of(config)) > 1 else "")
                    check_monitor(name, task, key)
                except ValueError as err:
                    raise ConfigError(str(err)) from err


def study_paths(config: RunConfig, stem: str, study: str | None, storage: str | None):
    name = study or config.tune.study or stem
    folder = Path(config.track.runs_dir) / name
    url = storage or config.tune.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    return name, folder, url


class Objective:
    """Trains one trial (or its k folds) and returns the objective value(s)."""

    def __init__(self, source: dict, folder: Path, data=None, storage: tuple[str, str] | None = None):
        self.source, self.folder, self.data = source, folder, data
        self.storage = storage  # (url, study name): where a trial on several processes reports
        self.members: dict = {}  # fitted ensemble members, reused by trials that do not change them

    def __call__(self, trial):
        import optuna

        from fitwell.pipeline import train

        config = RunConfig.model_validate(self.source)
        tune = config.tune
        params = suggest(trial, tune.space)
        trial.set_user_attr("overrides", params)
        trial.set_user_attr("pid", os.getpid())
        names = metrics_of(config)
        primary = next((n for n in names if n not in EXTRA_OBJECTIVES), "val_loss")
        if config.ensemble is not None:
            return self._ensemble_trial(trial, params, names)
        if config.data.task == "reinforcement" or config.data.task in UNSUPERVISED:
            return task_trial(config.data.task, trial, params, primary, self.source, self.folder, self.data)
        multi = len(names) > 1
        if config.privacy is not None:  # a private trial: its released (noised) score is the value
            params = {**params, "privacy.release_metric": primary}
        folds = [None] if tune.cv is None else [(tune.cv, i) for i in range(tune.cv)]
        values, runs = [], []
        for fold in folds:
            name = f"trial-{trial.number}" + ("" if fold is None else f"/fold-{fold[1]}")
            overrides = {**params, "track.runs_dir": str(self.folder), "track.name": name,
                         "track.overwrite": True, "train.progress": False}
            callbacks = [] if multi or tune.cv else [PruneOnPlateau(trial, primary)]
            source = {k: v for k, v in self.source.items() if k != "tune"}
            if config.train.devices * config.train.num_nodes > 1 and fold is None:
                run = self._trial_on_processes(trial, source, overrides, primary if callbacks else None)
            else:
                run = train(source, overrides, data=self.data, callbacks=callbacks, score_test=False,
                            fold=fold)
            runs.append(run)
            released = (run.summary.get("privacy") or {}).get("validation")
            values.append(released[primary] if released else run.summary["validation"].get(primary, math.nan))
        score = float(sum(values) / len(values))
        trial.set_user_attr("fold_scores", values)
        trial.set_user_attr("best_epoch", runs[0].summary.get("best_epoch") or runs[0].summary["epochs"])
        if not multi:
            if math.isnan(score):
                raise optuna.TrialPruned(f"{primary} was not logged")
            return score
        out = []
        for name in names:
            if name == "num_params":
                out.append(float(sum(p.numel() for p in runs[0].model.parameters())))
            elif name == "latency_ms":
                out.append(latency_ms(runs[0]))
            else:
                out.append(score if name == primary else float(runs[0].summary["validation"][name]))
        return out


    def _trial_on_processes(self, trial, source: dict, overrides: dict, monitor: str | None):
        """A trial that is itself a data-parallel run: its processes are started here, rank 0
        reports each epoch to the study's storage, and a pruned run stops on every rank."""
        import optuna

        from fitwell.launch import train_on_processes

        factory = None
        if monitor is not None and self.storage is not None:
            url, study = self.storage
            tune = self.source["tune"]
            factory = (pruning_on_processes, (url, study, trial._trial_id, monitor, tune))  # optuna's own id
        run = train_on_processes(load_run_config(source, overrides), None, data=self.data, score_test=False,
                                 callback_factory=factory)
        reason = run.summary.get("stop_reason") or ""
        if reason.startswith("pruned"):
            raise optuna.TrialPruned(reason)
        return run

    def _ensemble_trial(self, trial, params: dict, names: list[str]):
        """A trial of an ensemble config: fit it (members reused from earlier trials when their
        spec is unchanged) and return its validation score(s); no pruning (no epochs)."""
        import optuna

        from fitwell.ensemble import fit_ensemble

        overrides = {**params, "track.runs_dir": str(self.folder), "track.name": f"trial-{trial.number}",
                     "track.overwrite": True}
        source = {k: v for k, v in self.source.items() if k != "tune"}
        run = fit_ensemble(source, overrides, data=self.data, score_test=False, cache=self.members)
        values = [float(run.summary.get("validation", {}).get(name, math.nan)) for name in names]
        if any(math.isnan(v) for v in values):
            raise optuna.TrialPruned(f"{', '.join(names)} not scored on validation (split.val is 0?)")
        return values if len(values) > 1 else values[0]


def ensemble_metric_names(task: str) -> list[str]:
    """Validation metrics an ensemble trial reports for ``task`` (``val_`` + every test metric)."""
    import numpy as np

    from fitwell.evaluate.metrics import classification_metrics, regression_metrics

    if task == "regression":
        names = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.5]))
    else:
        names = classification_metrics(np.array([0, 1, 0, 1]), np.full((4, 2), 0.5))
    return ["val_loss"] + [f"val_{name}" for name in names]


def latency_ms(run, rows: int = 1000) -> float:
    """Milliseconds to predict ``rows`` rows (model only, preprocessed input, best of 5)."""
    import torch

    numeric = torch.randn(rows, run.preprocessor.num_numeric)
    codes = torch.zeros(rows, len(run.preprocessor.code_columns_), dtype=torch.long)
    best = math.inf
    with torch.inference_mode():
        for _ in range(5):
            started = time.perf_counter()
            run.model(numeric, codes)
            best = min(best, time.perf_counter() - started)
    return best * 1000


def _work(source: dict, folder: str, url: str, name: str, trials: int, timeout: float | None, data=None,
          threads: int | None = None):
    """One worker process: optimise the shared study until it holds ``trials`` finished trials."""
    import optuna

    if threads is not None:  # share the cores between workers instead of oversubscribing them
        import torch

        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # each trial's thread rule keeps this share

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = RunConfig.model_validate(source)
    study = optuna.load_study(study_name=name, storage=open_storage(url),
                              sampler=build_sampler(config.tune, config.seed + os.getpid()),
                              pruner=build_pruner(config.tune))
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=states))
    if done >= trials:
        return
    study.optimize(Objective(source, Path(folder), data, (url, name)), n_trials=trials - done,
                   timeout=timeout,
                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)],
                   catch=(), gc_after_trial=False)


def tune(config: ConfigLike, overrides=None, *, trials: int | None = None, workers: int = 1,
         storage: str | None = None, study: str | None = None, data=None, console=None) -> dict:
    """Run (or resume) a study, retrain the best configuration, score it on the test split once.

    Returns:
        The summary written to ``runs/<study>/summary.json``.
    """
    import optuna

    say = console_say(console)
    stem = config_stem(config, "study")
    config = load_run_config(config, overrides)
    check_tune(config, None if config.data.task == "auto" else config.data.task)
    mean_trials = trials or config.tune.trials
    if config.privacy is not None:  # a random number of trials (fitwell.privacy.select)
        from fitwell.privacy.select import check_private_search, sample_trials

        check_private_search(config)
        trials = sample_trials(mean_trials, config.seed if config.tune.seed is None else config.tune.seed)
        say(f"private search: {trials} trial(s), drawn from a geometric distribution with mean"
            f" {mean_trials:g} (the number stays in the study folder; only the best run is covered)")
    if workers > 1 and data is not None:
        raise ConfigError("--workers > 1 needs data.source (a DataFrame is not shared with processes)")
    name, folder, url = study_paths(config, stem, study, storage)
    with owned_folder(folder):
        write_text(folder / "config.yaml", dump_config(config))
        total = trials or config.tune.trials
        directions = directions_of(config)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        created = optuna.create_study(study_name=name, storage=open_storage(url), directions=directions,
                                      load_if_exists=True)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        before = len(created.get_trials(deepcopy=False, states=finished))
        say(f"study [bold]{name}[/] ({url.split('@')[-1]}): {before} of {total} trials done; sampler"
            f" {config.tune.sampler}, pruner {config.tune.pruner}, {workers} worker(s)")
        source = config.model_dump(mode="json")
        if workers <= 1:
            _work(source, str(folder), url, name, total, config.tune.timeout, data)
        else:
            context = multiprocessing.get_context("spawn")
            threads = max(1, (os.cpu_count() or 1) // workers)
            args = (source, str(folder), url, name, total, config.tune.timeout, None, threads)
            procs = [context.Process(target=_work, args=args) for _ in range(workers)]
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
            failed = [p.exitcode for p in procs if p.exitcode]
            if failed:
                raise RuntimeError(f"{len(failed)} tuning worker(s) failed (exit codes {failed})")
        study_obj = optuna.load_study(study_name=name, storage=open_storage(url))
        summary = finish(config, study_obj, folder, data, say, mean_trials)
    return summary


def finish(config: RunConfig, study, folder: Path, data, say, mean_trials: float = 0) -> dict:
    """Retrain the best configuration (a private search keeps its best trial as it is), score
    the test split once, write the summary and plots."""
    import optuna

    from fitwell.tune.report import write_outputs

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError("no trial finished; every trial was pruned or failed. Loosen tune.pruner or"
                          " check a single run with fitwell train first")
    multi = len(study.directions) > 1
    best = study.best_trials[0] if multi else study.best_trial
    params = dict(best.user_attrs["overrides"])
    overrides: dict[str, Any] = {**params, "track.runs_dir": str(folder), "track.name": "best",
                                 "track.overwrite": True, "train.progress": False}
    merge = config.tune.retrain_on == "train_val"
    if merge:
        overrides.update({"train.early_stopping.enabled": False,
                          "train.epochs": int(best.user_attrs.get("best_epoch") or config.train.epochs)})
    source = {k: v for k, v in config.model_dump(mode="json").items() if k != "tune"}
    if config.privacy is not None:
        from fitwell.tune.private import finish_private

        return finish_private(config, study, best, folder, data, say, mean_trials, metrics_of(config),
                              directions_of(config))
    final = refit_best(config, best.number, source, overrides, data, say, merge)
    summary = {
        "study": study.study_name, "metric": metrics_of(config), "directions": directions_of(config),
        "best_trial": best.number, "best_params": params,
        "best_validation": best.values if multi else best.value,
        "test": final.metrics, "test_note": "the test split was scored once, by the retrained best"
        " configuration, after tuning; trials never saw it",
        "retrained_on": config.tune.retrain_on, "best_run": str(final.path),
        "trials": len(study.trials),
    }
    if multi:
        summary["pareto_front"] = [{"trial": t.number, "values": t.values,
                                    "params": t.user_attrs["overrides"]} for t in study.best_trials]
    write_outputs(study, folder, summary)
    return summary

