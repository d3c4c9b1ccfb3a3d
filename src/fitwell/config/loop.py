"""The config sections nested under ``train``: early stopping, the learning-rate schedule, weight
averaging and resampling of the training rows."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from fitwell.config.section import Section
from fitwell.registry import SCHEDULES

LOWER_IS_BETTER = ("loss", "rmse", "mae", "log_loss", "mape", "brier", "ece", "median_ae", "davies_bouldin")


def resolve_mode(mode: str, monitor: str) -> Literal["min", "max"]:
    """``min`` or ``max`` for a monitored metric; ``auto`` reads it from the metric's name."""
    if mode != "auto":
        return mode
    return "min" if monitor.endswith(LOWER_IS_BETTER) else "max"


class EarlyStoppingConfig(Section):
    enabled: bool = True
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return resolve_mode(self.mode, self.monitor)


class ScheduleConfig(Section):
    """Learning-rate schedule; lengths are in epochs."""

    name: str = Field("none", description="a schedule of fitwell.registry.SCHEDULES: none, step, multistep,"
                      " exponential, cosine, cosine_restarts, onecycle, linear, plateau")
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warmup (cosine, cosine_restarts, linear)")
    warmup_start: float = Field(0.01, gt=0, le=1, description="Warmup starts at lr * this")
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    milestones: list[int] = Field(default_factory=list, description="multistep: epochs to decay at")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor (step, multistep, exponential, plateau)")
    min_lr: float = Field(0.0, ge=0)
    restart_epochs: int = Field(10, ge=1, description="cosine_restarts: first cycle length")
    restart_mult: int = Field(1, ge=1, description="cosine_restarts: cycle growth factor")
    max_lr: float | None = Field(None, gt=0, description="onecycle: peak rate (default train.lr)")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: share of steps rising")
    patience: int = Field(5, ge=0, description="plateau: epochs without gain before a decay")
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return resolve_mode(self.mode, self.monitor)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return SCHEDULES.check(value)


class AveragingConfig(Section):
    """Weight averaging: an exponential moving average, or stochastic weight averaging."""

    kind: Literal["ema", "swa"] = "ema"
    decay: float = Field(0.999, gt=0, lt=1, description="ema: weight kept per step")
    start_epoch: int = Field(1, ge=1, description="swa: first epoch averaged (1-based)")
    swa_lr: float | None = Field(None, gt=0, description="swa: constant rate while averaging")


class ResampleConfig(Section):
    """Over- or under-sampling of the training split only (imbalanced-learn), after preprocessing."""

    method: Literal["random_over", "random_under", "smote", "adasyn", "smote_tomek",
                    "smote_enn"] = "smote"
    ratio: Literal["auto"] | Annotated[float, Field(gt=0, le=1)] = Field(
        "auto", description="Wanted minority/majority ratio after resampling; auto = balanced")
    k_neighbors: int = Field(5, ge=1, description="smote/adasyn: neighbours interpolated between")


def sharding_conflicts(config) -> list[str]:
    """What ``train.strategy: fsdp`` cannot keep: the sharded copy trains, so what holds the
    module's own parameters (an averaged copy, frozen layers, a penalty over them, a mid-epoch
    snapshot) would see stale weights; fp16 needs a sharded gradient scaler."""
    train = config.train
    if train.strategy != "fsdp":
        return []
    found = [(train.averaging is not None, "train.averaging (EMA/SWA keep a full copy of the weights)"),
             (config.transfer.freeze != "none", "transfer.freeze (set it to none)"),
             (bool(train.l1 or train.l2), "train.l1 / train.l2 (use train.weight_decay)"),
             (train.checkpoint_every_steps is not None, "train.checkpoint_every_steps (checkpoints are"
                                                        " gathered at epoch ends)"),
             (train.precision in ("16-mixed", "bf16-true"), f"train.precision {train.precision} (use"
                                                            " 32-true or bf16-mixed)")]
    return [f"train.strategy fsdp cannot keep {what}" for bad, what in found if bad]
