"""Pruning a trial as it trains, on one process or several, and the study's storage."""

from __future__ import annotations

import math
import os

from fitwell.engine.callbacks import Callback
from fitwell.tune.space import build_pruner


def open_storage(url: str):
    """RDB storage with heartbeats: a trial whose process died (killed study, lost machine) is
    marked failed after the grace period and retried with the same parameters, not lost."""
    import warnings

    import optuna

    if not url.startswith(("sqlite", "postgresql", "mysql")):
        return url
    import random
    import time

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    def connect():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=2, grace_period=6, heartbeat_stale_trial_callback=retry,
                engine_kwargs=None if url.startswith("sqlite") else {"pool_pre_ping": True})

    for _ in range(5):
        try:
            return connect()
        except (IntegrityError, ProgrammingError):
            # workers started together on an empty database race to create Optuna's tables (on
            # PostgreSQL: "duplicate key value violates unique constraint pg_type_typname_nsp_index");
            # the loser finds them made a moment later
            time.sleep(0.2 + random.random())  # jitter, so the next tries do not collide again
    return connect()


class PruneOnPlateau(Callback):
    """Report the trial's metric each epoch to Optuna and stop the run if the pruner says so.

    The metric is this callback's ``monitor``, so a metric the run never logs is a config error
    before the first epoch (the pipeline checks every callback's monitor)."""

    def __init__(self, trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer, state, metrics):
        import optuna

        value, prune = metrics.get(self.monitor), False
        if self.trial is not None and value is not None and not math.isnan(value):  # rank 0 asks
            self.trial.report(value, state.epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr("pruned_at_epoch", state.epoch)
        if trainer.world is not None:  # a trial on several processes: every rank stops together
            prune = trainer.world.agree(prune)[0]
        if not prune:
            return
        reason = f"pruned at epoch {state.epoch} ({self.monitor} {value:.4g})"
        if trainer.world is None:
            raise optuna.TrialPruned(reason)
        state.should_stop, state.stop_reason = True, reason


def pruning_on_processes(url: str, study: str, trial_id: int, monitor: str, tune: dict) -> list[Callback]:
    """The callbacks of one process of a trial trained on several (``launch.run_on_process``):
    rank 0 reports to the study's storage and asks its pruner; the others follow its answer."""
    import optuna

    from fitwell.config.search import TuneConfig

    if int(os.environ.get("RANK", "0")):
        return [PruneOnPlateau(None, monitor)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.load_study(study_name=study, storage=open_storage(url),
                               pruner=build_pruner(TuneConfig.model_validate(tune)))
    return [PruneOnPlateau(optuna.trial.Trial(loaded, trial_id), monitor)]
