"""The training engine: loop, callbacks, losses, optimizers, schedules, checkpoints.

The public training function is ``fitwell.train`` (``fitwell.pipeline.train``); this package is
what it runs on. ``TensorData`` lives in ``fitwell.data.tensors`` and is re-exported here.
"""

from fitwell.data.tensors import TensorData
from fitwell.engine.callbacks import (
    Budget,
    Callback,
    CheckpointWriter,
    EarlyStopping,
    GradientNormMonitor,
    LearningRateMonitor,
    MetricsLogger,
    ModelCheckpoint,
    NanGuard,
    ProgressBar,
)
from fitwell.engine.loop import Trainer, TrainState

__all__ = ["Budget", "Callback", "CheckpointWriter", "EarlyStopping", "GradientNormMonitor",
           "LearningRateMonitor", "MetricsLogger", "ModelCheckpoint", "NanGuard", "ProgressBar",
           "TensorData", "TrainState", "Trainer"]
