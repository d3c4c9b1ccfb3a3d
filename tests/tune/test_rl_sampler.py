"""tune.sampler rl: the REINFORCE controller over categorical (architecture) choices."""

import numpy as np
import optuna
import pytest

from fitwell.tune.rl_sampler import build_rl_sampler

BLOCKS = {"plain": 0.0, "residual": 1.0, "wide": 0.3, "deep": 0.2}


def objective(trial):
    block = trial.suggest_categorical("block", list(BLOCKS))
    activation = trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
    dropout = trial.suggest_float("dropout", 0.0, 0.5)  # numeric: left to the independent sampler
    noise = np.random.default_rng(trial.number).normal(0, 0.1)
    return BLOCKS[block] + (0.5 if activation == "gelu" else 0.0) - 0.1 * dropout + noise


def share_of_best(sampler, trials=80, direction="maximize"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sign = 1 if direction == "maximize" else -1
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.optimize(lambda t: sign * objective(t), n_trials=trials)
    last = study.trials[-30:]
    return (np.mean([t.params["block"] == "residual" for t in last]),
            np.mean([t.params["activation"] == "gelu" for t in last]))


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_controller_learns_the_best_choices_where_random_search_does_not(direction):
    block, activation = share_of_best(build_rl_sampler(seed=0), direction=direction)
    assert block > 0.7 and activation > 0.5  # uniform choice gives 0.25 and 0.33
    block, activation = share_of_best(optuna.samplers.RandomSampler(seed=0), direction=direction)
    assert block < 0.45 and activation < 0.5


def test_the_controller_is_rebuilt_from_the_study_so_workers_and_resumes_agree():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=build_rl_sampler(seed=3))
    study.optimize(objective, n_trials=20)
    # a second process (or a resumed study) with a fresh sampler proposes what the first would
    fresh = [build_rl_sampler(seed=3), build_rl_sampler(seed=3)]
    trial = study.ask()
    space = fresh[0].infer_relative_search_space(study, trial)
    assert set(space) == {"block", "activation"}
    assert fresh[0].sample_relative(study, trial, space) == fresh[1].sample_relative(study, trial, space)
