"""The one step that turns a validated config into the resolved config of a run.

A validated ``RunConfig`` is frozen. What depends on the data or on measurement -- the task and
target, an image block for a folder source, the tokenizer of a pretrained text encoder,
``batch_size: auto`` and ``lr: auto`` -- is filled here, as a new frozen config; nothing changes a
config afterwards. The resolved config is what ``config.yaml`` of a run holds, so the run can be
reproduced from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fitwell.config.load import apply_overrides, format_validation_error
from fitwell.config.schema import RunConfig
from fitwell.errors import ConfigError


def replace_values(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """A new validated config with the dotted keys of ``values`` set.

    Example:
        >>> replace_values(RunConfig(), {"train.lr": 0.01}).train.lr
        0.01
    """
    if not values:
        return config
    raw = apply_overrides(config.model_dump(), values)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "config")) from err


def resolve_defaults(config: RunConfig) -> RunConfig:
    """Fill what follows from the config alone: a folder source gets its image block; the MiniLM
    encoder reads text with its own tokenizer."""
    values: dict[str, Any] = {}
    source = config.data.source
    if source and not source.startswith("sklearn:") and Path(source).is_dir() and config.data.image is None:
        values["data.image"] = {"column": "image"}
    if config.model.name == "minilm" and config.data.text is not None and config.data.text.tokenizer is None:
        values["data.text.tokenizer"] = "minilm"
    if config.tune is not None and config.tune.metric == "val_loss":  # the default, read for the task
        metric = default_tune_metric(config)
        if metric != "val_loss":
            values["tune.metric"] = metric
    return replace_values(config, values)


def default_tune_metric(config: RunConfig) -> str:
    """``tune.metric`` when left at val_loss: what the task's runs report on their validation rows."""
    from fitwell.config.tasks import AUTOENCODERS

    task, autoencoder = config.data.task, config.model.name in AUTOENCODERS
    if task == "reinforcement":
        return "val_mean_return"
    if task == "clustering":
        return "val_silhouette"
    if task == "anomaly":
        return "val_roc_auc" if config.data.labels else "val_loss"
    if task == "embedding":
        return "val_loss" if autoencoder else "val_explained_variance"
    return "val_loss"


def resolve_data(config: RunConfig, task: str, target: str) -> RunConfig:
    """The task and target the data showed (``prepare`` has checked every watched metric against
    the task)."""
    return replace_values(config, {"data.task": task, "data.target": target})
