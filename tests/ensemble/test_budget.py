"""ensemble.time_limit's rules, on a clock set by hand (no member is fitted)."""

import time

import pytest

from fitwell.config.search import MemberConfig
from fitwell.ensemble.budget import MemberBudget


def budget_with(seconds_left: float, limit: float = 100.0, folds: int = 5, spent=(20.0,)) -> MemberBudget:
    """A budget whose run started so that ``seconds_left`` remain before the 15% reserve."""
    reserve = max(0.15 * limit, 3.0)
    budget = MemberBudget(limit, time.monotonic() - (limit - reserve - seconds_left), folds)
    budget.spent.extend(spent)
    return budget


def test_members_that_stop_by_themselves_run_in_what_is_left_others_only_if_they_fit():
    said = []
    trees, network = MemberConfig(name="cat", kind="catboost"), MemberConfig(name="mlp")
    hgb = MemberConfig(name="hgb", kind="hist_gradient_boosting")  # stops at a deadline (TimeBoxed)
    bagged = MemberConfig(name="mlp3", bagging=3)
    budget = budget_with(15.0)  # a member took 20 s; 15 s left
    assert budget.allows(trees, said.append) and budget.allows(network, said.append)
    assert budget.allows(hgb, said.append) and not budget.allows(bagged, said.append)
    assert "mlp3" in said[0] and "taken up to 20 s" in said[0]
    # with another member still to come, the network's share (7.5 s) is under 2 s per fold model
    assert budget.allows(trees, said.append, remaining=2)
    assert not budget.allows(network, said.append, remaining=2)
    assert "too little for 5 fold models" in said[-1]
    tight = budget_with(2.0)  # under half a second per fold model: not even trees run
    assert not tight.allows(trees, said.append)


def test_each_member_gets_its_fair_share_of_the_time_left():
    budget = budget_with(60.0)
    deadline = budget.member_deadline(remaining=3)
    assert abs(deadline - time.monotonic() - 20.0) < 0.5  # a third of 60 s
    assert budget.member_deadline(remaining=1) <= budget.deadline() + 1e-9  # never past the run's
    mlp = budget.for_member(MemberConfig(name="mlp"), remaining=2)
    assert abs(mlp.overrides["train.max_time"] - 60.0 / 2 / 6) < 0.5  # its share over 5 folds + a refit
    assert MemberBudget(None, time.monotonic(), 5).member_deadline(3) is None


@pytest.mark.serial
def test_a_fitwell_member_stops_at_its_train_max_time():
    """An ensemble's network member trains under train.max_time (its share of ensemble.time_limit):
    a model that would take minutes stops within the share."""
    import numpy as np

    from fitwell.config.load import load_config
    from fitwell.ensemble.members import build_member

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    config = load_config({"train": {"epochs": 10_000, "progress": False, "batch_size": 32,
                                    "early_stopping": {"enabled": False}}})
    spec = MemberConfig(name="mlp", overrides={"train.max_time": 1.5, "model.hidden_sizes": [512, 512]})
    member = build_member(spec, config, "binary", 20, [], 2, [], seed=0)
    started = time.monotonic()
    member.fit(X, y)
    assert time.monotonic() - started < 4.0
    assert member.predict_proba(X[:5]).shape == (5, 2)


def test_hist_gradient_boosting_stops_at_its_deadline_and_grows_the_same_trees_before_it():
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fitwell.ensemble.members import TimeBoxed

    X, y = make_classification(3000, 12, n_informative=6, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=120, early_stopping=True, random_state=0)
    single = model.fit(X, y)
    boxed = TimeBoxed(HistGradientBoostingClassifier(max_iter=120, early_stopping=True, random_state=0),
                      deadline=time.monotonic() + 600, chunk=25).fit(X, y)
    assert boxed.estimator_.n_iter_ == single.n_iter_  # early stopping ended both at the same tree
    np.testing.assert_allclose(boxed.predict_proba(X), single.predict_proba(X), rtol=1e-9)
    late = TimeBoxed(HistGradientBoostingClassifier(max_iter=120, early_stopping=False, random_state=0),
                     deadline=time.monotonic() - 1, chunk=25).fit(X, y)
    assert late.estimator_.n_iter_ == 25 and late.estimator_.max_iter == 120  # one round, then stopped
    assert list(late.classes_) == [0, 1]
