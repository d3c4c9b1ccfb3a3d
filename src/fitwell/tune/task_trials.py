"""How each task's runs are tuned: a reinforcement trial is scored by its last evaluation's mean
return (each evaluation reported to the pruner, as RL Zoo prunes), a clustering / anomaly /
embedding trial on its validation rows -- neither plays or scores the test part -- and the best
trial of any task is trained again its own way (``refit_best``) and scored once."""

from __future__ import annotations

import math
from pathlib import Path

from fitwell.config.tasks import UNSUPERVISED
from fitwell.errors import ConfigError

UNSUPERVISED_METRICS = {  # what validation_scores reports (val_loss: an autoencoder's)
    "clustering": ("val_silhouette", "val_davies_bouldin", "val_calinski_harabasz", "val_adjusted_rand",
                   "val_nmi", "val_clusters", "val_loss"),
    "anomaly": ("val_roc_auc", "val_average_precision", "val_flagged_share", "val_loss"),
    "embedding": ("val_explained_variance", "val_loss"),
}


def check_task_metrics(task: str, names: list[str]) -> None:
    for name in names:
        if name not in UNSUPERVISED_METRICS[task]:
            raise ConfigError(f"tune.metric: {name!r} is not scored by a {task} run; scored:"
                              f" {', '.join(UNSUPERVISED_METRICS[task])}")


def task_trial(task: str, trial, params: dict, metric: str, source: dict, folder: Path, data=None) -> float:
    """Train one trial of a reinforcement or unsupervised config; its objective value."""
    import optuna

    overrides = {**params, "track.runs_dir": str(folder), "track.name": f"trial-{trial.number}",
                 "track.overwrite": True}
    source = {k: v for k, v in source.items() if k != "tune"}
    if task == "reinforcement":
        from fitwell.tasks.reinforcement import train_policy

        return float(train_policy(source, overrides, trial=trial).summary["validation"][metric])
    from fitwell.tasks.unsupervised import fit_unsupervised

    run = fit_unsupervised(source, {**overrides, "train.progress": False}, data=data, score_test=False)
    value = run.summary["validation"].get(metric)
    if value is None or math.isnan(value):
        raise optuna.TrialPruned(f"{metric} was not scored (no validation rows, or one cluster)")
    return float(value)


def refit_best(config, number: int, source: dict, overrides: dict, data, say, merge: bool):
    """Train the best trial's configuration again, the way its task trains, and score it once."""
    if config.ensemble is not None:
        from fitwell.ensemble import fit_ensemble

        say(f"refitting trial {number}'s ensemble; scoring the test split once")
        overrides = {k: v for k, v in overrides.items() if k != "train.progress"}
        final = fit_ensemble(source, overrides, data=data)
    elif config.data.task in UNSUPERVISED:
        from fitwell.tasks.unsupervised import fit_unsupervised

        say(f"refitting trial {number}; scoring the test rows once")
        final = fit_unsupervised(source, overrides, data=data)
    elif config.data.task == "reinforcement":
        from fitwell.tasks.reinforcement import train_policy

        say(f"retraining trial {number}; its final evaluation plays episodes no trial saw")
        final = train_policy(source, {k: v for k, v in overrides.items() if not k.startswith("train.")})
    else:
        say(f"retraining trial {number} on {'train+validation' if merge else 'train'};"
            " scoring the test split once")
        final = refit_network(source, overrides, data, merge)
    return final


def refit_network(source: dict, overrides: dict, data, merge: bool):
    """The best trial's network trained again: on its processes when ``train.devices`` asks
    several (a merged train+validation split trains on one)."""
    from fitwell.launch import needs_launch, train_on_processes
    from fitwell.pipeline import train
    from fitwell.run import load_run_config

    resolved = load_run_config(source, overrides)
    if not merge and needs_launch(resolved):
        return train_on_processes(resolved, None, data=data)
    return train(source, overrides, data=data, merge_val=merge)
