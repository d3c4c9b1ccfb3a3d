"""The run configuration: one pydantic model per pipeline stage, all with ``extra="forbid"``.

YAML key = constructor argument = attribute: ``train.lr`` is ``TrainConfig.lr``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["auto", "binary", "multiclass", "regression"]
ColumnKind = Literal["numeric", "categorical", "boolean", "id", "drop"]

# Metrics logged every epoch for each task (prefixed ``train_``/``val_``); a monitor must be one.
EPOCH_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("loss", "accuracy", "roc_auc"),
    "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "mae", "r2"),
}
LOWER_IS_BETTER = ("loss", "rmse", "mae", "log_loss", "mape", "brier")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    """How rows are divided into train / validation / test."""

    method: Literal["auto", "random", "stratified", "group", "time"] = "auto"
    train: float = Field(0.70, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    group_column: str | None = None
    time_column: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must sum to 1 (got {self.train} + {self.val} + {self.test}"
                f" = {total:g}); adjust the fractions"
            )
        if self.method == "group" and not self.group_column:
            raise ValueError("method 'group' needs split.group_column: the column to group by")
        if self.method == "time" and not self.time_column:
            raise ValueError("method 'time' needs split.time_column: the column to order by")
        return self


class DataConfig(Section):
    """Where the table comes from and what its columns are."""

    source: str | None = Field(
        None, description="CSV/Parquet/JSONL path or 'sklearn:<name>'; None when a DataFrame is given"
    )
    target: str | None = Field(None, description="Target column; sklearn datasets default to 'target'")
    task: Task = "auto"
    columns: dict[str, ColumnKind] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)
    drop_duplicates: bool = True
    normalize_strings: bool = True
    max_classes: int = Field(
        20, ge=2, description="Integer targets with at most this many values are classes")


class PreprocessConfig(Section):
    """Cleaning, encoding and scaling, fitted on the training split only."""

    impute_numeric: Literal["median", "mean", "most_frequent", "constant"] = "median"
    impute_categorical: Literal["most_frequent", "constant"] = "most_frequent"
    fill_value: float = 0.0
    missing_indicator: bool = False
    outliers: Literal["none", "quantile", "iqr"] = "none"
    outlier_quantiles: tuple[float, float] = (0.01, 0.99)
    iqr_factor: float = Field(1.5, gt=0)
    scale: Literal["standard", "minmax", "minmax_symmetric", "robust", "quantile", "none"] = "standard"
    onehot_max_categories: int = Field(10, ge=2, description="More categories than this -> embedding")
    scale_target: bool = Field(True, description="Standardise a regression target for training")

    @field_validator("outlier_quantiles")
    @classmethod
    def _quantiles(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low < high <= 1:
            raise ValueError(f"need 0 <= low < high <= 1, got [{low}, {high}]")
        return value


class ModelConfig(Section):
    """The network; ``name`` picks a registry entry, the other keys are its arguments."""

    name: str = "mlp"
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [128, 64])
    activation: Literal["relu", "gelu", "silu", "leaky_relu", "tanh", "sigmoid"] = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    embedding_dim: int = Field(16, gt=0, description="Largest embedding width for coded categories")


class EarlyStoppingConfig(Section):
    enabled: bool = True
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode != "auto":
            return self.mode
        return "min" if self.monitor.endswith(LOWER_IS_BETTER) else "max"


class TrainConfig(Section):
    """The optimisation loop."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    loss: Literal["auto", "cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"] = "auto"
    huber_delta: float = Field(1.0, gt=0)
    class_weights: Literal["balanced"] | dict[str, float] | None = None
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    device_data: bool = Field(True, description="Keep the tensors on the accelerator")
    checkpoint_every: int = Field(1, ge=1, description="Write the resume checkpoint every n epochs")
    progress: bool = True


class TrackConfig(Section):
    """Where the run directory goes."""

    runs_dir: str = "runs"
    name: str | None = Field(None, description="Run name; default '<config stem>-<timestamp>'")
    overwrite: bool = False


class RunConfig(Section):
    """A whole run."""

    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    @model_validator(mode="after")
    def _check_monitor(self) -> RunConfig:
        if self.data.task != "auto":
            check_monitor(self.train.early_stopping.monitor, self.data.task)
        return self


def epoch_metric_names(task: str) -> list[str]:
    """Names of every metric logged per epoch for ``task``."""
    return ["train_loss"] + [f"val_{name}" for name in EPOCH_METRICS[task]]


def check_monitor(monitor: str, task: str) -> None:
    """Raise ValueError when ``monitor`` is not a metric logged for ``task``."""
    known = epoch_metric_names(task)
    if monitor not in known:
        raise ValueError(
            f"train.early_stopping.monitor: {monitor!r} is never logged for a {task} task;"
            f" logged metrics: {', '.join(known)}"
        )
