"""The config sections of many runs: ``tune`` (an Optuna search space) and ``ensemble`` (members
and how to combine them). Split from schema.py, which holds the sections of one run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fitwell.config.section import Section


class ParamSpec(Section):
    """One searched hyperparameter: ``type`` float / int (``low``, ``high``, ``log``, ``step``) or
    categorical (``choices``: any YAML values); ``when`` makes it conditional on other entries."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    when: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical entry needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} entry needs 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"empty range: low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must be positive; low is {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined (Optuna's rule)")
        return self


class TuneConfig(Section):
    """Hyperparameter search with Optuna; ``space`` keys are dotted config paths."""

    metric: str | list[str] = "val_loss"
    direction: Literal["auto", "minimize", "maximize"] | list[Literal["minimize", "maximize"]] = "auto"
    trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0, description="Seconds for the whole study")
    sampler: Literal["tpe", "random", "grid", "gp", "cmaes", "nsga2", "qmc", "rl"] = Field(
        "tpe", description="rl: a REINFORCE controller over the categorical choices (architecture search)")
    pruner: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = "median"
    percentile: float = Field(25.0, gt=0, lt=100)
    startup_trials: int = Field(5, ge=0, description="Trials before pruning and model-based sampling")
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    cv: int | None = Field(None, ge=2, description="Score each trial by k-fold CV on train+validation")
    retrain_on: Literal["train", "train_val"] = "train"
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in the study folder")
    study: str | None = Field(None, description="Study name; default the config file's name")
    seed: int | None = None


MemberKind = Literal["fitwell", "lightgbm", "xgboost", "catboost", "hist_gradient_boosting", "sklearn"]


class MemberConfig(Section):
    """One ensemble member: a fitwell model (the run's model/train sections plus ``overrides``),
    a gradient-boosting model, or any scikit-learn estimator, optionally bagged, boosted or
    calibrated."""

    name: str = Field(min_length=1)
    kind: MemberKind = "fitwell"
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="fitwell members: dotted model.*/train.* keys")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="constructor arguments of non-fitwell members")
    estimator: str | None = Field(None, description="sklearn members: 'module:Class'")
    early_stopping: int = Field(
        0, ge=0, description="boosted-tree members (lightgbm, xgboost, catboost, hist_gradient_boosting):"
                             " stop after this many rounds without improvement on"
                             " ensemble.validation_fraction of each fit's rows, held out; 0: off")
    bagging: int = Field(0, ge=0, description="> 0: copies on bootstrap samples")
    boosting: int = Field(0, ge=0, description="> 0: AdaBoost with that many rounds, through sample weights")
    calibration: Literal["none", "isotonic", "sigmoid"] = "none"

    @model_validator(mode="after")
    def _check(self) -> MemberConfig:
        if self.kind == "sklearn" and not self.estimator:
            raise ValueError(f"member {self.name!r}: kind sklearn needs estimator: 'module:Class'"
                             " (for example sklearn.linear_model:LogisticRegression)")
        if self.kind != "sklearn" and self.estimator:
            raise ValueError(f"member {self.name!r}: estimator is for kind sklearn (kind is {self.kind})")
        if self.kind != "fitwell" and self.overrides:
            raise ValueError(f"member {self.name!r}: overrides are config keys of fitwell members;"
                             f" a {self.kind} member takes constructor arguments in params")
        if self.kind == "fitwell" and self.params:
            raise ValueError(f"member {self.name!r}: a fitwell member is configured by overrides"
                             " (dotted model.*/train.* keys), not params")
        bad = [k for k in self.overrides if not k.startswith(("model.", "train."))]
        if bad:
            raise ValueError(f"member {self.name!r}: overrides may set model.* and train.* keys only"
                             f" (got {', '.join(bad)}); data and split are shared by all members")
        if self.early_stopping and self.kind in ("fitwell", "sklearn"):
            raise ValueError(f"member {self.name!r}: early_stopping is for boosted-tree members; a"
                             f" {self.kind} member uses "
                             + ("train.early_stopping in overrides" if self.kind == "fitwell" else
                                "its estimator's own params"))
        if self.bagging and self.boosting:
            raise ValueError(f"member {self.name!r}: choose bagging or boosting, not both")
        return self


class EnsembleConfig(Section):
    """Members combined by stacking, voting, greedy weights or picking the best (``fitwell ensemble``)."""

    members: list[MemberConfig] = Field(min_length=1)
    method: Literal["auto", "stacking", "voting", "greedy", "best"] = Field(
        "auto", description="auto: the combiner with the lowest nested out-of-fold loss (each fitted on"
                            " k-1 folds of the members' out-of-fold outputs, scored on the fold left out)")
    voting: Literal["soft", "hard"] = "soft"
    metric: Literal["auto", "log_loss", "roc_auc", "accuracy", "mse"] = Field(
        "auto", description="what greedy selection, best and auto lower: auto is ROC AUC for binary"
                            " tasks, log loss for multiclass, mean squared error for regression")
    weights: dict[str, float] | None = Field(None, description="voting weight per member name (default 1)")
    meta_learner: Literal["linear", "lightgbm", "hist_gradient_boosting"] = "linear"
    stack_on: Literal["probability", "logit"] = Field(
        "probability", description="classifier outputs the meta-learner reads: probabilities or log-odds")
    use: list[str] | None = Field(None, description="names of the members to combine; default all")
    folds: int = Field(5, ge=2, description="folds of the out-of-fold predictions on the train split")
    greedy_rounds: int = Field(50, ge=1, description="selection rounds of the greedy weight search")
    final: Literal["refit", "bag"] = Field(
        "refit", description="the member that predicts: refit (one more fit on all the training rows)"
                             " or bag (the k fold models that made the out-of-fold predictions,"
                             " averaged: the out-of-fold score then describes the model that predicts)")
    refit_on: Literal["train", "train_val"] = Field(
        "train", description="train_val: the validation rows join the training rows of every member"
                             " and of the combiner (no validation metrics then); the test rows stay unseen")
    time_limit: float | None = Field(
        None, gt=0, description="seconds for the whole run from loading the data: members are fitted in"
                                " the order listed (cheap first) and a member that would not finish in"
                                " time is skipped; fitwell members get train.max_time from what is left")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5,
                                       description="share of a fitwell member's rows used for early stopping")

    @model_validator(mode="after")
    def _check(self) -> EnsembleConfig:
        names = [m.name for m in self.members]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"member names must be unique; repeated: {', '.join(repeated)}")
        for key, given in (("use", self.use or []), ("weights", list(self.weights or {}))):
            unknown = [n for n in given if n not in names]
            if unknown:
                raise ValueError(f"ensemble.{key}: unknown member {unknown[0]!r}; members are"
                                 f" {', '.join(names)}")
        if self.use is not None and not self.use:
            raise ValueError("ensemble.use is empty; name at least one member")
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ValueError("ensemble.weights must be >= 0")
        return self

    def chosen(self) -> list[MemberConfig]:
        return [m for m in self.members if self.use is None or m.name in self.use]
