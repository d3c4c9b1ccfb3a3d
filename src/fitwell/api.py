"""The public training functions: ``fitwell.train`` (a config, with or without an ``ensemble``
section) and ``fitwell.fit`` (a table and a target column, no config: a preset does the rest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fitwell.config.load import ConfigLike
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
    from fitwell.pipeline import train as train_model

    if resume is None and not options:
        resolved = load_run_config(config, overrides)
        if resolved.ensemble is not None:
            from fitwell.ensemble import fit_ensemble

            if callbacks:
                raise ConfigError("callbacks are for single-model runs; an ensemble's fitwell members take"
                                  " their train.* settings from the config")
            return fit_ensemble(config, overrides, data=data, console=console, started_at=started_at)
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
