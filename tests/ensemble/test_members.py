import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_classification

from fitwell.config.load import load_config
from fitwell.config.search import MemberConfig
from fitwell.ensemble.members import FitwellMemberClassifier, build_member
from fitwell.errors import ConfigError


def base_config():
    return load_config({"train": {"epochs": 20, "progress": False}})


def member(**spec):
    spec.setdefault("name", "m")
    return build_member(MemberConfig(**spec), base_config(), "binary", num_numeric=30, cardinalities=[],
                        num_classes=2, tree_categorical=[], seed=0)


def scaled_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def test_fitwell_member_learns_and_honours_sample_weight():
    X, y = scaled_breast_cancer()
    model = member().fit(X, y)
    assert model.score(X, y) > 0.95
    # flip the labels of half the rows, then give those rows no weight: the model learns the rest
    flipped = y.copy()
    rng = np.random.default_rng(0)
    half = rng.random(len(y)) < 0.5
    flipped[half] = 1 - flipped[half]
    ignored = member().fit(X, flipped, sample_weight=(~half).astype(float))
    trusted = member().fit(X, flipped)
    assert ignored.score(X, y) > 0.9 > trusted.score(X, y)


def test_fitwell_member_round_trips_through_skops(tmp_path):
    import skops.io as sio

    X, y = scaled_breast_cancer()
    model = member().fit(X, y)
    sio.dump(model, tmp_path / "m.skops")
    loaded = sio.load(tmp_path / "m.skops", trusted=sio.get_untrusted_types(file=tmp_path / "m.skops"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_bagging_and_adaboost_wrap_fitwell_members():
    X, y = scaled_breast_cancer()
    bagged = member(bagging=3).fit(X, y)
    assert type(bagged).__name__ == "BaggingClassifier" and len(bagged.estimators_) == 3
    assert bagged.score(X, y) > 0.95
    weak = {"model.hidden_sizes": [8], "train.lr": 0.01, "train.epochs": 10}
    boosted = member(boosting=3, overrides=weak).fit(X, y)
    assert type(boosted).__name__ == "AdaBoostClassifier"
    assert len(boosted.estimators_) >= 2 and boosted.score(X, y) > 0.9
    # AdaBoost reweights rows between rounds: later learners saw different weights, so they differ
    first, second = (e.predict_proba(X) for e in boosted.estimators_[:2])
    assert not np.allclose(first, second)


def xor_of_category_and_number(rows=800, seed=0):
    """y = (category in {1, 4, 6}) xor (number > 0): learnable only by splitting on category sets."""
    rng = np.random.default_rng(seed)
    category = rng.integers(0, 8, rows).astype(float)
    number = rng.normal(size=rows)
    y = (np.isin(category, [1, 4, 6]) ^ (number > 0)).astype(int)
    return np.c_[number, category], y


def category_splits(estimator) -> bool:
    """Whether the fitted library model split on column 1 as a category (not on its code's order)."""
    inner = estimator.estimator_
    if estimator.kind == "lightgbm":
        return "'decision_type': '=='" in str(inner.booster_.dump_model())
    if estimator.kind == "xgboost":
        return '"split_condition": [' in "".join(inner.get_booster().get_dump(dump_format="json"))
    return inner.get_cat_feature_indices() == [1]


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_boosted_tree_members_split_on_categories_natively(kind):
    X, y = xor_of_category_and_number()
    X[::13, 1] = np.nan  # missing categories go down the missing branch
    estimator = build_member(MemberConfig(name="gbm", kind=kind), base_config(), "binary", 1, [], 2,
                             tree_categorical=[1], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warnings leak to the user
        estimator.fit(X[:600], y[:600])
    assert category_splits(estimator)
    assert estimator.score(X[600:], y[600:]) > 0.9


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost", "hist_gradient_boosting"])
def test_early_stopping_stops_boosted_trees_on_noise_and_keeps_going_on_signal(kind):
    """early_stopping: rounds on held-out rows of each fit; on labels that are pure noise the trees
    stop after a few rounds, on a learnable target they use many."""
    rounds_key = "iterations" if kind == "catboost" else "max_iter" if kind == "hist_gradient_boosting" \
        else "n_estimators"
    X, y = xor_of_category_and_number(1500)
    noise = np.random.default_rng(1).integers(0, 2, len(y))
    spec = MemberConfig(name="gbm", kind=kind, early_stopping=10,
                        params={rounds_key: 300, "learning_rate": 0.05})
    fitted = {}
    for name, labels in (("noise", noise), ("signal", y)):
        estimator = build_member(spec, base_config(), "binary", 1, [], 2, tree_categorical=[1], seed=0)
        fitted[name] = estimator.fit(X, labels).n_iter_
    assert fitted["noise"] < 60 < fitted["signal"], fitted


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost", "hist_gradient_boosting"])
def test_early_stopping_keeps_every_class_of_one_or_two_rows_in_the_rows_it_fits(kind):
    """Rows held out for early stopping never take a class's only rows: a real table (duke_forest's
    `parking`, 13 of 19 classes with one or two rows) crashed the ensemble when the model knew
    16 of its fold's 17 classes ("shape mismatch: (16,16) vs (16,17)")."""
    rounds_key = "iterations" if kind == "catboost" else "max_iter" if kind == "hist_gradient_boosting" \
        else "n_estimators"
    X, y = make_classification(120, 5, n_informative=4, n_redundant=0, n_classes=3, random_state=0)
    y = y.copy()
    y[:7] = [3, 4, 4, 5, 6, 7, 8]  # six rare classes: one of two rows, five of one
    spec = MemberConfig(name="gbm", kind=kind, early_stopping=5, params={rounds_key: 30})
    for seed in range(6):  # where the held-out rows fall
        estimator = build_member(spec, base_config(), "multiclass", 5, [], 9, tree_categorical=[], seed=seed)
        proba = estimator.fit(X, y).predict_proba(X)
        assert proba.shape == (120, 9) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.serial
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_a_deadline_stops_a_boosted_tree_member_in_time(kind):
    import time

    X, y = xor_of_category_and_number(3000)
    rounds_key = "iterations" if kind == "catboost" else "n_estimators"
    spec = MemberConfig(name="gbm", kind=kind, params={rounds_key: 1_000_000, "learning_rate": 0.001})
    started = time.monotonic()
    estimator = build_member(spec, base_config(), "binary", 1, [], 2, tree_categorical=[1], seed=0,
                             deadline=started + 1.0)
    estimator.fit(X, y)
    assert time.monotonic() - started < 2.0
    assert 0 < estimator.n_iter_ < 1_000_000
    assert estimator.predict_proba(X).shape == (3000, 2)


def test_xgboost_and_catboost_members_run_save_and_reload_in_an_ensemble(tmp_path, monkeypatch):
    import pandas as pd

    from fitwell.ensemble import fit_ensemble
    from fitwell.serve import load_run

    monkeypatch.chdir(tmp_path)
    X, y = xor_of_category_and_number(600, seed=3)
    frame = pd.DataFrame({"x": X[:, 0], "colour": [f"c{int(c)}" for c in X[:, 1]], "y": y})
    run = fit_ensemble({"data": {"target": "y"}, "track": {"runs_dir": str(tmp_path)},
                        "explain": {"permutation": False},
                        "ensemble": {"folds": 3, "final": "bag", "members": [
                            {"name": "xgb", "kind": "xgboost", "early_stopping": 20},
                            {"name": "cat", "kind": "catboost", "params": {"iterations": 200}}]}},
                       data=frame)
    for name in ("xgb", "cat"):
        assert run.summary["members"][name]["oof"]["accuracy"] > 0.9
    again = load_run(run.path)
    new = frame.drop(columns=["y"]).head(20)
    np.testing.assert_allclose(again.predict(new)["proba_1"], run.predict(new)["proba_1"])
    assert not (tmp_path / "catboost_info").exists()  # CatBoost writes nothing into the working folder


def test_sklearn_member_by_import_path():
    X, y = make_classification(200, 5, random_state=0)
    estimator = member(kind="sklearn", estimator="sklearn.naive_bayes:GaussianNB")
    assert estimator.fit(X, y).predict_proba(X).shape == (200, 2)


@pytest.mark.parametrize("spec, message", [
    ({"kind": "sklearn"}, r"kind sklearn needs estimator"),
    ({"kind": "lightgbm", "overrides": {"model.dropout": 0.1}}, r"params"),
    ({"overrides": {"data.target": "y"}}, r"model\.\* and train\.\* keys only"),
    ({"bagging": 2, "boosting": 2}, r"bagging or boosting"),
])
def test_bad_member_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        MemberConfig(name="m", **spec)


def test_build_errors_name_the_member():
    with pytest.raises(ConfigError, match=r"'m' params: .*n_estimatorz"):
        member(kind="hist_gradient_boosting", params={"n_estimatorz": 3})
    with pytest.raises(ConfigError, match=r"'m' overrides: .*train\.lrr"):
        member(overrides={"train.lrr": 0.1})
    with pytest.raises(ConfigError, match=r"'m'.*Ridge has no predict_proba"):
        member(kind="sklearn", estimator="sklearn.linear_model:Ridge")
    with pytest.raises(ConfigError, match=r"'m'.*is a classifier but the task is regression"):
        build_member(MemberConfig(name="m", kind="sklearn", estimator="sklearn.naive_bayes:GaussianNB"),
                     base_config(), "regression", 30, [], 0, [], 0)
    with pytest.raises(ConfigError, match=r"calibration is for classifiers"):
        build_member(MemberConfig(name="m", calibration="isotonic"), base_config(), "regression", 30, [], 0,
                     [], 0)
    with pytest.raises(ConfigError, match=r"no_such_module"):
        member(kind="sklearn", estimator="no_such_module:Thing")


def test_fitwell_member_predicts_every_class_even_when_a_bootstrap_missed_one():
    X, y = make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)
    config = base_config().model_dump(mode="json")
    model = FitwellMemberClassifier(config, 6, [], num_classes=3).fit(X[y != 2], y[y != 2])
    assert model.predict_proba(X).shape == (300, 3)


def test_fold_bagging_predicts_with_the_models_that_made_the_out_of_fold_predictions(tmp_path):
    """ensemble.final: bag keeps the k fold models (no refit): each saw (k-1)/k of the training
    rows, the run reloads from its directory, and its predictions are the mean of the k models."""
    import pandas as pd

    from fitwell.ensemble import fit_ensemble
    from fitwell.ensemble.members import FoldBag
    from fitwell.serve import load_run

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = 3 * frame["x"] + rng.normal(size=300)
    run = fit_ensemble({"data": {"target": "y"}, "track": {"runs_dir": str(tmp_path)},
                        "explain": {"permutation": False},
                        "ensemble": {"folds": 4, "final": "bag", "members": [
                            {"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 20}}]}},
                       data=frame)
    bag = run.ensemble.members[0].estimator
    assert isinstance(bag, FoldBag) and len(bag.estimators) == 4
    assert all(m.n_iter_ == 20 for m in bag.estimators)  # four fitted fold models
    oof = pd.read_csv(run.path / "oof.csv")
    assert len(oof) == run.summary["split"]["train"]
    again = load_run(run.path)
    new = frame.drop(columns=["y"]).head(5)
    assert np.allclose(again.predict(new)["prediction"], run.predict(new)["prediction"])


@pytest.mark.serial
def test_a_member_deadline_is_shared_out_between_the_folds():
    """Fold i of k may run until i/k of the way to the member's deadline: with trees that would
    take hours, every fold model still gets its share of rounds, and the member ends in time."""
    import time

    from sklearn.model_selection import StratifiedKFold

    from fitwell.ensemble.folds import bag_folds

    X, y = xor_of_category_and_number(3000)
    spec = MemberConfig(name="gbm", kind="lightgbm",
                        params={"n_estimators": 1_000_000, "learning_rate": 1e-4})
    started = time.monotonic()
    estimator = build_member(spec, base_config(), "binary", 1, [], 2, tree_categorical=[1], seed=0,
                             deadline=started + 2.0)
    oof, bag = bag_folds(estimator, X, y, StratifiedKFold(4), None, "predict_proba", {}, 2)
    assert time.monotonic() - started < 3.0
    rounds = [model.n_iter_ for model in bag.estimators]
    assert min(rounds) > 10, rounds  # the last folds were not starved by the first
    ends = [model.deadline - started for model in bag.estimators]
    np.testing.assert_allclose(ends, [0.5, 1.0, 1.5, 2.0], atol=0.1)  # fold i of 4 stops at i/4 of the way
    assert oof.shape == (3000, 2)


def test_folds_fitted_side_by_side_give_the_same_bag():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    from fitwell.ensemble.folds import bag_folds

    X, y = xor_of_category_and_number(2000)
    estimator = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    one = bag_folds(estimator, X, y, StratifiedKFold(3), None, "predict_proba", {}, 2)
    side_by_side = bag_folds(estimator, X, y, StratifiedKFold(3), None, "predict_proba", {}, 2, workers=2,
                             openmp_threads=1)
    np.testing.assert_array_equal(one[0], side_by_side[0])  # out-of-fold predictions, in fold order
    for a, b in zip(one[1].estimators, side_by_side[1].estimators, strict=True):
        np.testing.assert_array_equal(a.predict_proba(X[:50]), b.predict_proba(X[:50]))


def test_members_in_one_queue_give_the_bags_they_give_alone_and_share_the_deadline_by_round():
    """An ensemble of boosted trees fits every member's folds as one queue of one-thread jobs:
    each member's out-of-fold predictions and fold models are the ones it gets alone, and a job's
    deadline is its round's share of the way (2 workers, 6 jobs: rounds at 1/3, 2/3 and 1)."""
    import time

    from sklearn.model_selection import StratifiedKFold

    from fitwell.ensemble.folds import FoldJobs, bag_folds, fit_side_by_side

    X, y = xor_of_category_and_number(1500)
    started = time.monotonic()
    deadline = started + 600.0
    specs = [MemberConfig(name="gbm", kind="lightgbm", params={"n_estimators": 30}),
             MemberConfig(name="hgb", kind="hist_gradient_boosting", params={"max_iter": 30})]
    estimators = [build_member(spec, base_config(), "binary", 1, [], 2, tree_categorical=[1], seed=0,
                               deadline=deadline) for spec in specs]
    jobs = [FoldJobs(e, X, y, StratifiedKFold(3), None, "predict_proba", {}, 2) for e in estimators]
    together = fit_side_by_side(jobs, workers=2)
    for estimator, (oof, bag, seconds) in zip(estimators, together, strict=True):
        if "threads" in estimator.get_params():
            estimator.set_params(threads=1)  # what each job of the queue runs on
        alone_oof, alone_bag = bag_folds(estimator, X, y, StratifiedKFold(3), None, "predict_proba", {}, 2,
                                         workers=1, openmp_threads=1)
        np.testing.assert_array_equal(oof, alone_oof)
        for a, b in zip(bag.estimators, alone_bag.estimators, strict=True):
            np.testing.assert_array_equal(a.predict_proba(X[:50]), b.predict_proba(X[:50]))
        assert 0 < seconds < 60
    shares = [(model.deadline - started) / 600.0 for _, bag, _ in together for model in bag.estimators]
    np.testing.assert_allclose(shares, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1], atol=0.01)


def test_a_thread_count_in_a_members_params_wins_over_the_queues():
    X, y = xor_of_category_and_number(400)
    model = member(kind="lightgbm", params={"n_estimators": 5, "n_jobs": 2}).set_params(threads=1).fit(X, y)
    assert model.estimator_.get_params()["n_jobs"] == 2
    model = member(kind="lightgbm", params={"n_estimators": 5}).set_params(threads=1).fit(X, y)
    assert model.estimator_.get_params()["n_jobs"] == 1
