"""The search space: dotted config keys -> Optuna distributions; samplers and pruners by name."""

from __future__ import annotations

from typing import Any

import numpy as np

from fitwell.config.load import apply_overrides, format_validation_error
from fitwell.config.schema import RunConfig
from fitwell.config.search import ParamSpec, TuneConfig
from fitwell.errors import ConfigError


def check_space(config: RunConfig) -> None:
    """Every space key must be a real config key, and a ``when`` must name another space entry.

    Raises:
        ConfigError: naming ``tune.space.<key>``.
    """
    from pydantic import ValidationError

    tune = config.tune
    base = config.model_dump(mode="json", exclude={"tune"})
    for key, spec in tune.space.items():
        if key.startswith("tune."):
            raise ConfigError(f"tune.space.{key}: the tune section itself cannot be searched")
        if spec.type == "categorical":
            samples = list(spec.choices)
        else:
            cast = float if spec.type == "float" else int
            samples = [cast(spec.low), cast(spec.high)]  # both ends of the range must be valid
        for sample in samples:
            try:
                RunConfig.model_validate(apply_overrides(base, {key: sample}))
            except ValidationError as err:
                problem = format_validation_error(err, "config").splitlines()[0].removeprefix("config: ")
                raise ConfigError(f"tune.space.{key}: not a settable config key, or a bad value"
                                  f" {sample!r}: {problem}") from err
            except ConfigError as err:
                raise ConfigError(f"tune.space.{key}: not a settable config key: {err}") from err
        for parent in spec.when:
            if parent not in tune.space:
                raise ConfigError(f"tune.space.{key}.when: {parent!r} is not a tune.space entry; a"
                                  " condition can only test another searched parameter")


def ordered(space: dict[str, ParamSpec]) -> list[str]:
    """Keys with every ``when`` parent before its children."""
    done: list[str] = []
    pending = list(space)
    while pending:
        progress = False
        for key in list(pending):
            if all(parent in done for parent in space[key].when):
                done.append(key)
                pending.remove(key)
                progress = True
        if not progress:
            raise ConfigError(f"tune.space: conditions form a cycle among {', '.join(pending)}")
    return done


def suggest(trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample the space in ``trial``; conditional entries whose condition fails are left out."""
    values: dict[str, Any] = {}
    for key in ordered(space):
        spec = space[key]
        if any(values.get(parent, _MISSING) != want for parent, want in spec.when.items()):
            continue
        if spec.type == "float":
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log,
                                            step=int(spec.step or 1))
        elif scalar_choices(spec):
            values[key] = trial.suggest_categorical(key, spec.choices)
        else:  # lists of layer sizes and other YAML values: Optuna stores the index
            index = trial.suggest_categorical(key, list(range(len(spec.choices))))
            values[key] = spec.choices[index]
            trial.set_user_attr(key, spec.choices[index])
    return values


def scalar_choices(spec: ParamSpec) -> bool:
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in spec.choices)


_MISSING = object()


def grid(space: dict[str, ParamSpec]) -> dict[str, list]:
    """Optuna's GridSampler space; floats need a step."""
    out: dict[str, list] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            out[key] = list(spec.choices) if scalar_choices(spec) else list(range(len(spec.choices)))
        elif spec.type == "int":
            out[key] = list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))
        elif spec.step is None:
            raise ConfigError(f"tune.space.{key}: the grid sampler needs a 'step' for float entries")
        else:
            out[key] = [float(v) for v in np.arange(spec.low, spec.high + spec.step / 2, spec.step)]
    return out


def build_sampler(tune: TuneConfig, seed: int):
    import warnings

    import optuna

    with warnings.catch_warnings():  # GP and QMC samplers are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(tune, seed)


def _sampler(tune: TuneConfig, seed: int):
    import optuna.samplers as samplers

    seed = tune.seed if tune.seed is not None else seed
    startup = tune.startup_trials
    if tune.sampler == "tpe":
        return samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    if tune.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if tune.sampler == "grid":
        return samplers.GridSampler(grid(tune.space), seed=seed)
    if tune.sampler == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if tune.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if tune.sampler == "nsga2":
        return samplers.NSGAIISampler(seed=seed)
    if tune.sampler == "rl":
        from fitwell.tune.rl_sampler import build_rl_sampler

        return build_rl_sampler(seed)
    return samplers.QMCSampler(seed=seed)


def build_pruner(tune: TuneConfig):
    import optuna.pruners as pruners

    warmup = dict(n_startup_trials=tune.startup_trials, n_warmup_steps=1)
    if tune.pruner == "median":
        return pruners.MedianPruner(**warmup)
    if tune.pruner == "percentile":
        return pruners.PercentilePruner(tune.percentile, **warmup)
    if tune.pruner == "successive_halving":
        return pruners.SuccessiveHalvingPruner()
    if tune.pruner == "hyperband":
        return pruners.HyperbandPruner()
    return pruners.NopPruner()
