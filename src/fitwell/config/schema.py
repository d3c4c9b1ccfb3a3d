"""The run configuration: one pydantic model per pipeline stage, all with ``extra="forbid"``.

YAML key = constructor argument = attribute: ``train.lr`` is ``TrainConfig.lr``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fitwell.config.inputs import ImageConfig, SequenceConfig, SyntheticConfig, TextConfig
from fitwell.config.loop import (  # noqa: F401  (resolve_mode and LOWER_IS_BETTER are schema's API too)
    LOWER_IS_BETTER,
    AveragingConfig,
    EarlyStoppingConfig,
    ResampleConfig,
    ScheduleConfig,
    resolve_mode,
    sharding_conflicts,
)
from fitwell.config.privacy import PrivacyConfig, privacy_conflicts
from fitwell.config.scoring import CalibrationConfig, ExplainConfig, MonitorConfig  # noqa: F401
from fitwell.config.search import EnsembleConfig, TuneConfig
from fitwell.config.section import Section
from fitwell.config.tasks import (
    UNSUPERVISED,
    AnomalyConfig,
    ClusterConfig,
    EnvConfig,
    PretrainConfig,
    RLConfig,
    move_task_key,
    task_conflicts,
)
from fitwell.registry import CALLBACKS, LOSSES, MODELS, OPTIMIZERS

Task = Literal["auto", "binary", "multiclass", "regression", "clustering", "anomaly", "embedding",
               "reinforcement"]
ColumnKind = Literal["numeric", "categorical", "boolean", "text", "id", "drop"]

# Metrics logged every epoch for each task (prefixed ``train_``/``val_``); a monitor must be one.
EPOCH_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("loss", "accuracy", "roc_auc"),
    "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "mae", "r2"),
    "reinforcement": ("mean_return", "std_return"),
    **{task: ("loss",) for task in UNSUPERVISED},  # an autoencoder's reconstruction loss
}
class SplitConfig(Section):
    """How rows are divided into train / validation / test."""

    method: Literal["auto", "random", "stratified", "group", "time"] = "auto"
    train: float = Field(0.70, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1, description="0: no test split -- score your own test file once,"
                                                      " with fitwell evaluate RUN --data FILE")
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
    labels: str | None = Field(None, description="clustering / anomaly: known groups, for evaluation only")
    task: Task = "auto"
    columns: dict[str, ColumnKind] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)
    drop_duplicates: bool = Field(
        False, description="Drop exact duplicate rows before the split. Off by default: repeated rows"
                           " are often real observations; identical rows are kept in the same split"
                           " part either way, so they cannot leak between train and test")
    normalize_strings: bool = True
    weight_column: str | None = Field(None, description="Per-row sample weights for the loss")
    max_classes: int = Field(
        20, ge=2, description="Integer targets with at most this many values are classes (when each"
                              " value has 5 rows on average; fewer: numbers to predict)")
    sensitive: list[str] = Field(
        default_factory=list, description="Columns whose groups the bias audit compares on the test split")
    image: ImageConfig | None = None
    text: TextConfig | None = None
    sequence: SequenceConfig | None = None
    synthetic: SyntheticConfig | None = None
    out_of_core: bool | Literal["auto"] = Field("auto", description="Stream a Parquet table into memory"
                                                " maps; auto: when it is over data.memory_budget GiB")
    memory_budget: float | None = Field(None, gt=0, description="Default a quarter of RAM")
    sample_rows: int = Field(100_000, ge=100, description="Out of core: the sample preprocessing fits on")


class AuditConfig(Section):
    """The data audit run before every training (``audit.json``) and by ``fitwell audit``."""

    enabled: bool = True
    fail_on: Literal["none", "warning", "error"] = Field(
        "none", description="Stop before training when a finding is at least this severe")
    leakage_score: float = Field(
        0.99, gt=0.5, le=1, description="A single column scoring this well on held-out rows is a leak")
    shift_psi: float = Field(0.25, gt=0, description="Population stability index that counts as a shift")
    imbalance_ratio: float = Field(0.1, gt=0, lt=1, description="Minority/majority class ratio to warn at")
    min_group_size: int = Field(30, ge=1, description="Bias audit: smaller test groups are not judged")
    max_rows: int = Field(50_000, ge=100, description="Rows sampled for the costlier checks")


class PreprocessConfig(Section):
    """Cleaning, encoding and scaling, fitted on the training split only."""

    impute_numeric: Literal["median", "mean", "most_frequent", "constant"] = "median"
    impute_categorical: Literal["most_frequent", "constant"] = Field(
        "constant", description="constant: a missing category is its own category ('<missing>'), so the"
                                " gap stays a signal; most_frequent: the commonest category")
    fill_value: float = 0.0
    missing_indicator: bool = False
    outliers: Literal["none", "quantile", "iqr"] = "none"
    outlier_quantiles: tuple[float, float] = (0.01, 0.99)
    iqr_factor: float = Field(1.5, gt=0)
    scale: Literal["standard", "minmax", "minmax_symmetric", "robust", "robust_smooth_clip", "quantile",
                   "none"] = Field("standard", description="robust_smooth_clip: median/IQR, then x / sqrt(1 +"
                                                           " (x/3)^2) (RealMLP)")
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

    name: str = Field("mlp", description="a family of fitwell.registry.MODELS (fitwell.models)")
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [128, 64])
    activation: Literal["relu", "gelu", "silu", "leaky_relu", "tanh", "sigmoid"] = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    embedding_dim: int = Field(16, gt=0, description="Largest embedding width for coded categories")
    noise: float | None = Field(None, ge=0, description="denoising_autoencoder: noise std (default 0.2)")
    # Keys of other families; unset (null) means the family's own default. A family ignores keys
    # it does not take, so a tuning space can search model.name across families.
    width: int | None = Field(None, gt=0, description="resmlp: residual width; transformer: token width")
    blocks: int | None = Field(None, ge=1, description="resmlp / tabular_transformer: number of blocks")
    heads: int | None = Field(None, ge=1, description="tabular_transformer: attention heads")
    ensemble_size: int | None = Field(None, ge=1, description="tabm: k, the heads trained side by side")
    embeddings: Literal["periodic", "piecewise_linear", "none"] | None = Field(
        None, description="mlp, tabm: embeddings of the numbers -- periodic, piecewise_linear (bins from"
                          " the training rows' quantiles) or none (mlp's default; tabm's is periodic)")
    number_embedding_dim: int | None = Field(None, ge=1, description="mlp: width of each number's embedding"
                                                                     " (default 8)")
    ffn_factor: float | None = Field(None, gt=0, description="feed-forward width = width * ffn_factor")
    attention_dropout: float | None = Field(None, ge=0, lt=1, description="tabular_transformer")
    residual_dropout: float | None = Field(None, ge=0, lt=1, description="tabular_transformer: dropout on"
                                           " each block's branches (default 0)")
    channels: list[Annotated[int, Field(gt=0)]] | None = Field(
        None, description="cnn / resnet: channels of each stage (each stage halves the image)")
    cell: Literal["rnn", "lstm", "gru"] | None = Field(None, description="rnn: the recurrent cell")
    bidirectional: bool | None = Field(None, description="rnn: read the sequence both ways")
    text_encoder: Literal["rnn", "transformer"] | None = Field(
        None, description="combiner: the encoder of a text or sequence input")
    freeze: bool | None = Field(None, description="minilm: keep the pretrained encoder fixed")
    backbone: str | None = Field(None, description="timm: the timm model name, e.g. resnet18")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return MODELS.check(value)


class AugmentConfig(Section):
    """Augmentation of training batches only (never validation, test or predict unless ``tta``)."""

    flip: float = Field(0.0, ge=0, le=1, description="images: horizontal flip probability")
    vertical_flip: float = Field(0.0, ge=0, le=1)
    rotation: float = Field(0.0, ge=0, le=180, description="images: random rotation up to this many degrees")
    translate: float = Field(0.0, ge=0, lt=1, description="images: random shift, share of the size")
    scale: float = Field(0.0, ge=0, lt=1, description="images: random zoom of 1 +- this")
    shear: float = Field(0.0, ge=0, le=45, description="images: random shear in degrees")
    crop: float = Field(0.0, ge=0, le=1, description="images: probability of a random resized crop")
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="images: area share a crop keeps")
    color_jitter: float = Field(0.0, ge=0, le=1, description="images: brightness/contrast jitter strength")
    erasing: float = Field(0.0, ge=0, le=1, description="images: random erasing probability")
    mixup: float = Field(0.0, ge=0, description="mixup alpha (0 = off): mixes numbers and images")
    cutmix: float = Field(0.0, ge=0, description="cutmix alpha (0 = off): images")
    mix_prob: float = Field(1.0, ge=0, le=1, description="share of batches mixed when mixup/cutmix is on")
    noise: float = Field(0.0, ge=0, description="tables: Gaussian noise sd on the scaled numbers")
    token_dropout: float = Field(0.0, ge=0, lt=1, description="text: share of tokens set to [MASK]/[UNK]")
    tta: int = Field(0, ge=0, description="predict: average over this many augmented copies (0 = off)")

    @property
    def image_enabled(self) -> bool:
        return any((self.flip, self.vertical_flip, self.rotation, self.translate, self.scale, self.shear,
                    self.crop, self.color_jitter, self.erasing))

    @property
    def enabled(self) -> bool:
        return self.image_enabled or any((self.mixup, self.cutmix, self.noise, self.token_dropout))


class TransferConfig(Section):
    """Start from pretrained weights: an earlier run, or a safetensors / PyTorch file."""

    weights: str | None = Field(None, description="A fitwell run directory or a .safetensors/.pt/.pth file")
    freeze: Literal["none", "backbone"] = Field("none", description="backbone: train only the head")
    unfreeze_every: int | None = Field(
        None, ge=1, description="Gradual unfreezing: every n epochs the next layer group down is unfrozen")
    backbone_lr: float = Field(1.0, gt=0, le=1, description="Backbone learning rate = train.lr * this")
    load_head: bool = Field(False, description="Also load the head (same task); default: a new head")
    require: float = Field(0.5, ge=0, le=1, description="Fail if fewer than this share of the model's"
                                                       " backbone tensors load")


class CallbackSpec(BaseModel):
    """A callback from config: a built-in name or 'module:Class', plus its arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return CALLBACKS.check(value, allow_import=True)


class TrainConfig(Section):
    """The optimisation loop."""

    epochs: int = Field(100, ge=1)
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = 128
    batch_size_memory_cap: float = Field(2.0, gt=0, description="GiB for batch_size: auto on CPU")
    optimizer: str = Field("adamw", description="an optimizer of fitwell.registry.OPTIMIZERS: sgd, adam,"
                           " adamw, rmsprop, adagrad")
    lr: Annotated[float, Field(gt=0)] | Literal["auto"] = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: str = Field("auto", description="auto, cross_entropy, binary_cross_entropy, focal, mse, mae,"
                                           " huber, or 'module:function'")
    huber_delta: float = Field(1.0, gt=0)
    focal_gamma: float = Field(2.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["balanced"] | dict[str | int, float] | None = None
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights, added to the loss")
    averaging: AveragingConfig | None = None
    clip_grad_norm: float | None = Field(None, gt=0)
    clip_grad_value: float | None = Field(None, gt=0)
    accumulate_batches: int = Field(1, ge=1)
    resample: ResampleConfig | None = Field(None, description="Rebalance the training split's classes")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    grad_norm_every: int | None = Field(
        10, ge=1, description="Log the gradient norm every n steps (the doctor reads it); null = off")
    callbacks: list[CallbackSpec] = Field(default_factory=list)
    nan_guard: bool = True
    max_time: float | None = Field(None, gt=0, description="Seconds for the whole run, from loading the"
                                   " data to the report: training stops early enough to leave a tenth of"
                                   " it for scoring and the report")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps")
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: int = Field(1, ge=1, description="Data-parallel processes on this machine (one per GPU)")
    num_nodes: int = Field(1, ge=1, description="Machines (a launcher on each: torchrun, fitwell slurm)")
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="auto = ddp (the model replicated); fsdp: parameters, gradients and optimizer"
                            " state sharded over the processes (FSDP2)")
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    deterministic: bool = False
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="CPU threads for training; auto: 1 for small models, else the free cores"
                            " (fitwell.engine.threads)")
    device_data: bool = Field(True, description="Keep the tensors on the accelerator")
    checkpoint_every: int = Field(1, ge=1, description="Write the resume checkpoint every n epochs")
    checkpoint_max_overhead: float = Field(
        0.02, ge=0, lt=1, description="Skip an epoch's resume checkpoint while the last one's cost"
                                      " (snapshot + write) is over this share of the training time"
                                      " since it; 0: every checkpoint_every epochs")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Also write it every n optimizer steps (mid-epoch resume)")
    progress: bool = True

    @field_validator("loss")
    @classmethod
    def _loss(cls, value: str) -> str:
        return LOSSES.check(value, allow_import=True)

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, value: str) -> str:
        return OPTIMIZERS.check(value)


class TrackConfig(Section):
    """Where the run directory goes, and which trackers follow the run."""

    runs_dir: str = "runs"
    name: str | None = Field(None, description="Run name; default '<config stem>-<timestamp>'")
    overwrite: bool = False
    loggers: list[Literal["csv", "tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=lambda: ["csv"], description="csv, tensorboard, mlflow, wandb (offline)")
    experiment: str = Field("fitwell", description="MLflow experiment / W&B project name")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<runs_dir>/mlflow.db")
    mlflow_log_model: bool = Field(True, description="Log the trained model to MLflow as a pyfunc model")
    report: bool = Field(True, description="Write report.html at the end of the run")


class RunConfig(Section):
    """A whole run."""

    seed: int = 0
    preset: Literal["fast", "good", "best"] | None = Field(
        None, description="values from fitwell/presets/<name>.yaml under your own (fitwell train FILE"
                          " --target COL uses good)")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    tune: TuneConfig | None = None
    ensemble: EnsembleConfig | None = None
    privacy: PrivacyConfig | None = Field(None, description="Differentially private training to a budget")
    env: EnvConfig | None = Field(None, description="task reinforcement: the Gymnasium environment")
    rl: RLConfig | None = Field(None, description="task reinforcement: algorithm, steps, evaluation")
    cluster: ClusterConfig | None = Field(None, description="task clustering: method and k")
    anomaly: AnomalyConfig | None = Field(None, description="task anomaly: scoring and threshold")
    pretrain: PretrainConfig | None = Field(None, description="Self-supervised pretraining, then fine-tuning")

    _task_key = model_validator(mode="before")(move_task_key)

    @model_validator(mode="after")
    def _check_monitor(self) -> RunConfig:
        if self.privacy is not None and (problems := privacy_conflicts(self)):
            raise ValueError("a private run (privacy section) cannot keep: " + "; ".join(problems))
        if problems := task_conflicts(self) + sharding_conflicts(self):
            raise ValueError("; ".join(problems))
        if self.data.task not in ("auto", "reinforcement"):
            check_monitors(self, self.data.task)
        if self.calibration.method != "none" and self.split.val == 0:
            raise ValueError("calibration.method: temperature scaling is fitted on the validation"
                             " split, but split.val is 0; give the validation split a share")
        return self


def epoch_metric_names(task: str) -> list[str]:
    """Names of every metric logged per epoch for ``task``."""
    return ["train_loss"] + [f"val_{name}" for name in EPOCH_METRICS[task]]


def check_monitor(monitor: str, task: str, key: str = "train.early_stopping.monitor") -> None:
    """Raise ValueError when ``monitor`` is not a metric logged for ``task``."""
    known = epoch_metric_names(task)
    if monitor not in known:
        raise ValueError(
            f"{key}: {monitor!r} is never logged for a {task} task;"
            f" logged metrics: {', '.join(known)}"
        )


def check_monitors(config: RunConfig, task: str) -> None:
    """Every metric a callback or schedule watches must be one the loop logs."""
    train = config.train
    if train.early_stopping.enabled:
        check_monitor(train.early_stopping.monitor, task)
    if train.schedule.name == "plateau":
        check_monitor(train.schedule.monitor, task, "train.schedule.monitor")
    for i, spec in enumerate(train.callbacks):
        monitor = (spec.model_extra or {}).get("monitor")
        if monitor is not None:
            check_monitor(monitor, task, f"train.callbacks.{i}.monitor")
