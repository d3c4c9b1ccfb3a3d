"""The public training functions: ``fitwell.train`` (a config, with or without an ``ensemble``
section) and ``fitwell.fit`` (a table and a target column, no config: a preset does the rest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fitwell.config.load import ConfigLike
from fitwell.config.tasks import UNSUPERVISED
from fitwell.errors import ConfigError
from fitwell.run import load_run_config


def train(config: ConfigLike | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None, *,
          data: pd.DataFrame | None = None, resume: str | Path | None = None, callbacks=(), console=None,
          started_at: float | None = None, **options):
    """Train what the config describes and return the finished run: a single model
    (``fitwell.pipeline.train``), or, when the config has an ``ensemble`` section (a preset gives
    one), the ensemble (``fitwell.ensemble.fit_ensemble``). Time limits count from ``started_at``
    (a ``time.monotonic()`` reading; default now).

    Example:
        >>> run = train("examples/wine.yaml", overrides={"train.lr": 1e-3})  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
    """
    from fitwell.launch import needs_launch, train_on_processes
    from fitwell.pipeline import train as train_model
    from fitwell.run import resumed_config

    if options:  # a fold, a merged split: one process (the pipeline says so if train.devices asks more)
        return train_model(config, overrides, data=data, resume=resume, callbacks=callbacks, console=console,
                           started_at=started_at, **options)
    resolved = resumed_config(resume, overrides) if resume is not None else load_run_config(config, overrides)
    if resolved.data.task in UNSUPERVISED:
        from fitwell.tasks.unsupervised import fit_unsupervised

        if options:
            raise ConfigError(f"a {resolved.data.task} run is not split into folds")
        return fit_unsupervised(config, overrides, data=data, console=console, started_at=started_at,
                                resume=resume, callbacks=callbacks)
    if resolved.data.task == "reinforcement":
        from fitwell.tasks.reinforcement import train_policy

        return train_policy(config, overrides, resume=resume, callbacks=callbacks, console=console,
                            started_at=started_at)
    if resolved.ensemble is not None and resume is None:
        from fitwell.ensemble import fit_ensemble

        if callbacks:
            raise ConfigError("callbacks are for single-model runs; an ensemble's fitwell members take"
                              " their train.* settings from the config")
        if resolved.train.devices * resolved.train.num_nodes > 1:
            raise ConfigError("train.devices: an ensemble trains its members side by side on one process"
                              " each; drop train.devices, or train one network (no ensemble section)")
        return fit_ensemble(config, overrides, data=data, console=console, started_at=started_at)
    if needs_launch(resolved):
        return train_on_processes(resolved, config, resume=resume, data=data, callbacks=callbacks,
                                  console=console, started_at=started_at)
    return train_model(config, overrides, data=data, resume=resume, callbacks=callbacks, console=console,
                       started_at=started_at, **options)


def fit(data: pd.DataFrame | str | Path, target: str, *, time_limit: float | None = None,
        preset: str | None = "good", task: str | None = None,
        overrides: Sequence[str] | Mapping[str, Any] | None = None, console=None):
    """The best model fitwell builds for ``target`` without a config.

    Args:
        data: a DataFrame, or a CSV/Parquet/JSONL path.
        target: the column to predict.
        time_limit: seconds for the whole run, data to report (``ensemble.time_limit``, or
            ``train.max_time`` with ``preset=None``).
        preset: fast, good (default) or best (``fitwell/presets/*.yaml``); None trains one network.
        task: binary, multiclass or regression (default: read from the target).
        overrides: more dotted config keys, as for ``train``.

    Example:
        >>> run = fit(frame, target="churn", time_limit=120)  # doctest: +SKIP
        >>> run.metrics, run.predict(new_rows)  # doctest: +SKIP
    """
    config: dict[str, Any] = {"data": {"target": target}, "preset": preset}
    if task is not None:
        config["data"]["task"] = task
    frame = data if isinstance(data, pd.DataFrame) else None
    if frame is None:
        config["data"]["source"] = str(data)
    values = _as_dict(overrides)
    if time_limit is not None:
        values.setdefault("ensemble.time_limit" if preset else "train.max_time", time_limit)
    return train(config, values, data=frame, console=console)


def _as_dict(overrides) -> dict[str, Any]:
    from fitwell.config.load import parse_overrides

    return dict(parse_overrides(overrides))


def privacy_audit(run_path: str | Path, data: pd.DataFrame | str | Path | None = None, *,
                  reference: bool = True, seed: int = 0) -> dict[str, Any]:
    """How much a finished run leaks about its training rows (``fitwell.privacy.audit``): its
    training rows against its validation and test rows, rebuilt from the run's config and saved
    preprocessing; writes ``RUN/privacy_audit.json`` and refreshes the report.

    Args:
        run_path: a single-model run directory.
        data: the table the run trained on, when ``data.source`` does not name it.
        reference: also train a reference model on half of the held-out rows (the calibrated
            attack; seconds for a small model).
        seed: which rows are sampled and how the halves fall.
    """
    import numpy as np

    from fitwell.data.prepare import prepare
    from fitwell.data.sources import read_table
    from fitwell.data.tensors import predict_in_chunks
    from fitwell.privacy.audit import audit_membership
    from fitwell.track.bundle import Run
    from fitwell.track.report import write_report

    run = Run(run_path)
    frame = read_table(data) if isinstance(data, (str, Path)) else data
    prepared = prepare(run.config, frame, preprocessor=run.preprocessor)
    held_out = prepared.val.concat(prepared.test) if len(prepared.val) else prepared.test
    if len(held_out) < 20:
        raise ConfigError(f"privacy-audit: {len(held_out)} validation and test rows; the attack needs at"
                          " least 20 rows the model never saw (give split.val / split.test a share)")
    outputs = [predict_in_chunks(run.model, part, chunk=4096).numpy() for part in (prepared.train, held_out)]
    targets = [part.target.numpy() for part in (prepared.train, held_out)]
    delta = (run.summary.get("privacy") or {}).get("delta", 1.0 / (10 * len(prepared.train)))
    calibration = None
    if reference:
        trained = np.random.default_rng(seed + 1).random(len(held_out)) < 0.5
        model = reference_model(run, held_out.select(np.flatnonzero(trained)), seed)
        calibration = tuple(predict_in_chunks(model, part, chunk=4096).numpy()
                            for part in (prepared.train, held_out)) + (trained,)
    result = audit_membership(run.task, outputs[0], targets[0], outputs[1], targets[1], seed, delta,
                              calibration)
    result["claimed_epsilon"] = (run.summary.get("privacy") or {}).get("epsilon")
    run.dir.write_json(run.path / "privacy_audit.json", result)
    write_report(run.path)
    return result


def reference_model(run, rows, seed: int):
    """The run's model family and training, without privacy, fitted on ``rows`` only."""
    from fitwell.engine.build import fit_arrays
    from fitwell.models.build import build_model

    config = run.config.model_copy(update={"privacy": None, "seed": seed})
    model, _ = build_model(config, run.preprocessor, run.task, rows.numeric)
    classes = len(run.preprocessor.classes_ or [])
    module, _ = fit_arrays(config, model, run.task, rows.numeric.numpy(), rows.codes.numpy(),
                           rows.target.numpy(), num_classes=classes)
    return module
