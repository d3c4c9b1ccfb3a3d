"""The ``privacy`` section: differentially private training (DP-SGD through Opacus) to a budget.

A private run trains with per-row clipped, noised gradients on Poisson-sampled batches, the noise
calibrated so that the whole planned training spends ``epsilon`` at ``delta``. The settings a
private run cannot keep -- they read private rows outside the accounting or break the per-row
bound -- are refused here by key, with what to use instead (``privacy_conflicts``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from fitwell.config.section import Section
from fitwell.errors import ConfigError


class PrivacyConfig(Section):
    """Differential privacy of the training steps (``fitwell.privacy``)."""

    epsilon: float = Field(gt=0, description="The budget of the whole training: the epsilon of"
                                             " (epsilon, delta)-DP")
    delta: Literal["auto"] | float = Field(
        "auto", description="auto: the largest power of ten at most min(1e-5, 0.1 / n) for n training rows;"
                            " a number must be in (0, 1/n)")
    mechanism: Literal["dp-sgd", "dp-ftrl", "blt"] = Field(
        "dp-sgd", description="dp-sgd: Poisson-sampled batches, Gaussian noise each step (Opacus);"
                              " dp-ftrl: no sampling or shuffling assumed, tree-aggregated noise"
                              " (fitwell.privacy.ftrl); blt: the same assumption, buffered linear"
                              " Toeplitz noise over one fixed row order (fitwell.privacy.blt)")
    max_grad_norm: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        1.0, description="Each row's gradient is clipped to this L2 norm; auto: adaptive clipping, the"
                         " bound follows a privately counted quantile of the norms (Andrew et al. 2021)")
    clip_quantile: float = Field(0.9, gt=0, lt=1, description="max_grad_norm auto: the share of rows left"
                                                             " unclipped the bound moves towards")
    accountant: Literal["rdp", "prv", "gdp"] = Field(
        "prv", description="Opacus' accountant: prv (tightest), rdp (Renyi), gdp (Gaussian DP, an"
                           " asymptotic approximation)")
    clipping: Literal["ghost", "opacus_ghost", "per_sample"] = Field(
        "ghost", description="ghost: per-row norms without per-row gradients -- one backward pass for"
                             " networks of linear and embedding layers (fitwell.privacy.fastclip), Opacus'"
                             " ghost clipping for the rest; opacus_ghost: always Opacus'; per_sample:"
                             " Opacus' per-sample gradients (more memory)")
    preprocessing_epsilon: Literal["auto"] | Annotated[float, Field(ge=0)] = Field(
        "auto", description="The share of epsilon for the preprocessing statistics released from the"
                            " private rows (fitwell.privacy.preprocess); auto: a tenth when any is needed")
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Public range of every number column (and a regression target):"
                                          " values are clipped to it; known without the data")
    categories: dict[str, list[str | int | float | bool]] = Field(
        default_factory=dict, description="Public category lists; a column without one gets a DP list")
    score_epsilon: float = Field(0.1, gt=0, description="fitwell tune: the epsilon of each trial's noised"
                                                         " validation score (fitwell.privacy.select)")
    release_metric: Literal["val_loss", "val_accuracy"] | None = Field(
        None, description="Set by fitwell tune: release this validation score, noised, at the run's end")
    fix_batch_norm: bool = Field(True, description="Turn model.batch_norm off (BatchNorm mixes the rows of"
                                                   " a batch); false: refuse such a model instead")


    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: dict) -> dict:
        for column, (low, high) in value.items():
            if not low < high:
                raise ValueError(f"{column}: low {low:g} must be below high {high:g}")
        return value


def privacy_conflicts(config: Any) -> list[str]:
    """What ``config`` (a RunConfig with a ``privacy`` section) sets that a private run cannot do,
    each as 'key: why; what instead'."""
    train, problems = config.train, []
    if train.l1 or train.l2:
        problems.append("train.l1 / train.l2: a penalty added to the loss is not clipped per row;"
                        " use train.weight_decay (applied by the optimizer, outside the data)")
    if train.clip_grad_norm or train.clip_grad_value:
        problems.append("train.clip_grad_norm / train.clip_grad_value: a private run clips each row's"
                        " gradient itself; set privacy.max_grad_norm")
    if train.accumulate_batches > 1:
        problems.append("train.accumulate_batches: a private run takes one noised step per Poisson-sampled"
                        " batch; raise train.batch_size instead")
    if train.class_weights == "balanced":
        problems.append("train.class_weights: balanced weights count the private labels; give the weights"
                        " by class name ({yes: 3.0}) from public knowledge")
    if train.resample is not None:
        problems.append("train.resample: duplicating or dropping rows by class breaks the per-row bound;"
                        " remove it")
    if ":" in train.loss:
        problems.append("train.loss: a private run needs each row's loss; use a built-in loss")
    if train.batch_size == "auto" or train.lr == "auto":
        problems.append("train.batch_size / train.lr: auto measures on the private rows; set numbers")
    if train.precision != "32-true":
        problems.append("train.precision: private training runs in 32-true")
    if train.devices * train.num_nodes > 1:
        problems.append("train.devices / train.num_nodes: private training runs on one process (its noise"
                        " and accountant are not shared across processes yet); set them to 1")
    if config.augment.mixup or config.augment.cutmix:
        problems.append("augment.mixup / augment.cutmix: mixing rows breaks the per-row bound; turn them off")
    if config.model.batch_norm and not config.privacy.fix_batch_norm:
        problems.append("model.batch_norm: BatchNorm mixes the rows of a batch; set it false (or"
                        " privacy.fix_batch_norm: true)")
    if config.model.embeddings == "piecewise_linear":
        problems.append("model.embeddings: piecewise_linear bins come from the private rows' quantiles;"
                        " use periodic or none")
    if config.privacy.max_grad_norm == "auto" and (config.privacy.mechanism != "dp-sgd"
                                                   or config.privacy.clipping == "per_sample"):
        problems.append("privacy.max_grad_norm: auto (adaptive clipping) runs with dp-sgd and ghost clipping")
    if config.ensemble is not None:
        problems.append("ensemble: its members and combiner are not accounted; train one private model"
                        " (the presets have an ensemble: give a config with model and train instead)")
    return problems


def resolve_delta(setting: Any, rows: int) -> float:
    """``privacy.delta``: ``auto`` is the largest power of ten at most min(1e-5, 0.1 / rows); a
    number must be below 1 / rows (a larger delta allows publishing a row outright)."""
    if setting == "auto":
        return float(10.0 ** math.floor(math.log10(min(1e-5, 0.1 / max(rows, 1)))))
    if not 0 < setting < 1 / rows:
        raise ConfigError(f"privacy.delta: {setting:g} must be in (0, 1/n) = (0, {1 / rows:.3g}) for the"
                          f" {rows} training rows; use auto (the largest power of ten at most"
                          f" min(1e-5, 0.1/n))")
    return float(setting)
