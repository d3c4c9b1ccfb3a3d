"""Callbacks: a base with no-op hooks, the built-ins, and a registry for names in YAML."""

from __future__ import annotations

from fitwell.engine.callbacks.base import Callback, is_improvement, overrides
from fitwell.engine.callbacks.checkpointing import CheckpointWriter, ModelCheckpoint
from fitwell.engine.callbacks.early_stopping import EarlyStopping
from fitwell.engine.callbacks.guards import Budget, NanGuard, first_non_finite
from fitwell.engine.callbacks.monitors import GradientNormMonitor, LearningRateMonitor
from fitwell.engine.callbacks.progress import MetricsLogger, ProgressBar
from fitwell.registry import CALLBACKS

for _name, _cls in {"early_stopping": EarlyStopping, "model_checkpoint": ModelCheckpoint,
                    "lr_monitor": LearningRateMonitor, "grad_norm_monitor": GradientNormMonitor,
                    "nan_guard": NanGuard, "budget": Budget}.items():
    CALLBACKS.register(_name)(_cls)


def build_callback(spec: dict, index: int) -> Callback:
    """A callback from a config entry: ``{name: <registry name | module:Class>, **arguments}``.

    Raises:
        ConfigError: unknown name, import failure or bad arguments, naming train.callbacks.<i>.
    """
    from fitwell.engine.losses import import_object
    from fitwell.errors import ConfigError

    spec = dict(spec)
    name = spec.pop("name")
    key = f"train.callbacks.{index}"
    factory = import_object(name, f"{key}.name") if ":" in name else CALLBACKS.get(name, f"{key}.name")
    try:
        callback = factory(**spec)
    except TypeError as err:
        raise ConfigError(f"{key}: cannot build {name!r} with {spec}: {err}") from err
    if not isinstance(callback, Callback):
        raise ConfigError(f"{key}: {name!r} is not a fitwell Callback (subclass fitwell.engine.Callback)")
    return callback


__all__ = ["CALLBACKS", "Budget", "Callback", "CheckpointWriter", "EarlyStopping", "GradientNormMonitor",
           "LearningRateMonitor", "MetricsLogger", "ModelCheckpoint", "NanGuard", "ProgressBar",
           "build_callback", "first_non_finite", "is_improvement", "overrides"]
