import pytest

from fitwell.config import load_config
from fitwell.errors import ConfigError
from fitwell.tune.space import check_space, grid, ordered


def config(space, **tune):
    return load_config({"tune": {"space": space, **tune}})


@pytest.mark.parametrize("space, match", [
    ({"train.lr": {"type": "float", "low": 0.1, "high": 0.1}}, r"tune\.space\.train\.lr: empty range"),
    ({"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}},
     r"tune\.space\.train\.lr: a log range must be positive"),
    ({"model.dropout": {"type": "categorical", "choices": []}}, r"tune\.space\.model\.dropout: .*non-empty"),
    ({"train.lr": {"type": "float", "high": 1}}, r"needs 'low' and 'high'"),
])
def test_bad_entries_name_the_key(space, match):
    with pytest.raises(ConfigError, match=match):
        config(space)


def test_unknown_sampler_names_the_key():
    with pytest.raises(ConfigError, match=r"tune\.sampler: Input should be 'tpe'"):
        load_config({"tune": {"sampler": "bayes"}})


@pytest.mark.parametrize("space, match", [
    ({"train.lrr": {"type": "float", "low": 0.1, "high": 1}},
     r"tune\.space\.train\.lrr: not a settable config key.*Did you mean 'train\.lr'"),
    ({"model.dropout": {"type": "float", "low": 0.5, "high": 2}}, r"tune\.space\.model\.dropout"),
    ({"train.momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"train.optimizer": "sgd"}}},
     r"tune\.space\.train\.momentum\.when: 'train\.optimizer' is not a tune\.space entry"),
])
def test_keys_must_exist_in_the_config(space, match):
    with pytest.raises(ConfigError, match=match):
        check_space(config(space))


def test_conditions_come_after_their_parents():
    space = config({"train.momentum": {"type": "float", "low": 0.5, "high": 0.9,
                                       "when": {"train.optimizer": "sgd"}},
                    "train.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}}).tune.space
    assert ordered(space) == ["train.optimizer", "train.momentum"]


def test_grid_needs_steps_for_floats():
    with pytest.raises(ConfigError, match=r"tune\.space\.train\.lr: the grid sampler needs a 'step'"):
        grid(config({"train.lr": {"type": "float", "low": 0.1, "high": 1}}).tune.space)
    got = grid(config({"model.dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
                       "model.hidden_sizes": {"type": "categorical", "choices": [[8], [16, 8]]}}).tune.space)
    assert got == {"model.dropout": [0.0, 0.1, 0.2], "model.hidden_sizes": [0, 1]}


def test_val_loss_cannot_rank_trials_with_different_losses():
    from fitwell.tune.study import check_tune

    bad = load_config({"tune": {"metric": "val_loss", "space": {
        "train.loss": {"type": "categorical", "choices": ["mse", "huber"]}}}})
    with pytest.raises(ConfigError, match=r"tune\.metric: val_loss is not comparable .*train\.loss"):
        check_tune(bad)
    check_tune(load_config({"tune": {"metric": "val_rmse", "space": {
        "train.loss": {"type": "categorical", "choices": ["mse", "huber"]}}}}))
