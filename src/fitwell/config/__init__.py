"""Run configuration: schema, loading, overrides."""

from fitwell.config.load import dump_config, load_config, parse_overrides
from fitwell.config.schema import (
    DataConfig,
    EarlyStoppingConfig,
    ModelConfig,
    PreprocessConfig,
    RunConfig,
    SplitConfig,
    TrackConfig,
    TrainConfig,
    check_monitor,
    check_monitors,
    epoch_metric_names,
)

__all__ = [
    "DataConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "PreprocessConfig",
    "RunConfig",
    "SplitConfig",
    "TrackConfig",
    "TrainConfig",
    "check_monitor",
    "check_monitors",
    "dump_config",
    "epoch_metric_names",
    "load_config",
    "parse_overrides",
]
