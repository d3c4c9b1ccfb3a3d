"""The training engine: loop, callbacks, losses, optimizers, schedules, checkpoints.

``fitwell.train(config, ...)`` is also the public training function, while DESIGN.md puts this
package at the same name. Importing ``fitwell.train.loop`` rebinds the attribute ``fitwell.train``
to this package, so the package itself is made callable and forwards to
``fitwell.pipeline.train``: both spellings work whatever was imported first.
"""

import sys
import types

from fitwell.train.callbacks import (
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
from fitwell.train.loop import TensorData, Trainer, TrainState


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from fitwell.pipeline import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Budget", "Callback", "CheckpointWriter", "EarlyStopping", "GradientNormMonitor",
           "LearningRateMonitor", "MetricsLogger", "ModelCheckpoint", "NanGuard", "ProgressBar",
           "TensorData", "TrainState", "Trainer"]
