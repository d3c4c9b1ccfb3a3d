import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from fitwell.ensemble.combine import Voting, build_combiner, error_correlation, greedy_weights


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine])
def test_stacking_gives_scikit_learns_stacking_classifier_predictions(loader):
    X, y = loader(return_X_y=True)
    members = [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
               ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)))]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    task = "binary" if len(np.unique(y)) == 2 else "multiclass"
    oof = [cross_val_predict(m, X, y, cv=cv, method="predict_proba") for _, m in members]
    fitted = [m.fit(X, y).predict_proba(X) for _, m in members]
    ours = build_combiner("stacking", oof, y, task, names=[n for n, _ in members],
                          stack_on="probability").combine(fitted)
    meta = LogisticRegression(max_iter=1000, tol=1e-3)  # fitwell's linear meta-learner
    theirs = StackingClassifier(members, final_estimator=meta, cv=cv).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_stacking_gives_scikit_learns_stacking_regressor_predictions():
    X, y = load_diabetes(return_X_y=True)
    members = [("ridge", Ridge(alpha=1.0)), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))]
    cv = KFold(5, shuffle=True, random_state=0)
    oof = [cross_val_predict(m, X, y, cv=cv) for _, m in members]
    fitted = [m.fit(X, y).predict(X) for _, m in members]
    ours = build_combiner("stacking", oof, y, "regression", names=["ridge", "tree"]).combine(fitted)
    theirs = StackingRegressor(members, final_estimator=RidgeCV(), cv=cv).fit(X, y).predict(X)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


@pytest.mark.parametrize("outputs, y, expected", [
    ([np.array([0.0, 1.0]), np.array([1.0, 1.0])], np.array([0.0, 1.0]), [1.0, 0.0]),  # one is exact
    ([np.array([1.0, 1.0]), np.array([-1.0, -1.0])], np.array([0.0, 0.0]), [0.5, 0.5]),  # errors cancel
    ([np.array([2.0]), np.array([-1.0])], np.array([0.0]), [1 / 3, 2 / 3]),  # 1/3*2 + 2/3*-1 = 0
])
def test_greedy_weights(outputs, y, expected):
    np.testing.assert_allclose(greedy_weights(outputs, y, "regression", rounds=6), expected)


def test_greedy_prefers_the_informative_member_and_beats_averaging():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = np.where(y[:, None] == np.arange(2), 0.8, 0.2)
    noise = rng.dirichlet([1, 1], 500)
    weights = greedy_weights([good, noise], y, "binary")
    assert weights[0] > 0.9
    greedy = build_combiner("greedy", [good, noise], y, "binary", names=["good", "noise"])
    average = build_combiner("voting", [good, noise], y, "binary", names=["good", "noise"])
    from sklearn.metrics import log_loss

    assert log_loss(y, greedy.combine([good, noise])) < log_loss(y, average.combine([good, noise]))


def test_hard_and_soft_voting_differ_as_they_should():
    # two members barely for class 0, one member strongly for class 1
    a = np.array([[0.55, 0.45]])
    b = np.array([[0.0, 1.0]])
    soft = Voting([1, 1, 1], "binary", "soft").fit([], None).combine([a, a, b])
    hard = Voting([1, 1, 1], "binary", "hard").fit([], None).combine([a, a, b])
    assert soft.argmax() == 1 and hard.argmax() == 0
    np.testing.assert_allclose(hard, [[2 / 3, 1 / 3]])
    weighted = Voting([1, 1, 3], "binary", "hard").fit([], None).combine([a, a, b])
    assert weighted.argmax() == 1


def test_weights_default_to_one_for_unnamed_members_and_best_picks_the_lowest_loss():
    y = np.array([0.0, 1.0, 2.0])
    outputs = [y + 1.0, y.copy(), y - 3.0]
    voting = build_combiner("voting", outputs, y, "regression", names=["a", "b", "c"], weights={"c": 0.0})
    np.testing.assert_allclose(voting.combine(outputs), y + 0.5)
    best = build_combiner("best", outputs, y, "regression", names=["a", "b", "c"])
    assert best.describe()["weights"] == [0.0, 1.0, 0.0]


def test_error_correlation_of_identical_and_opposite_members():
    y = np.array([0.0, 0.0, 0.0, 0.0])
    a = np.array([1.0, -1.0, 2.0, 0.5])
    matrix = error_correlation([a, a * 2, -a], y, "regression")
    np.testing.assert_allclose(matrix, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]])


def test_logit_stacking_reads_log_odds():
    from fitwell.ensemble.combine import stack_features

    p = np.array([[0.5, 0.5], [0.2, 0.8]])
    np.testing.assert_allclose(stack_features([p], "binary", "logit"), [[0.0], [np.log(4.0)]])
    np.testing.assert_allclose(stack_features([p], "binary"), [[0.5], [0.8]])


def test_nested_out_of_fold_loss_judges_combiners_on_rows_they_did_not_fit():
    from fitwell.ensemble.combine import nested_oof_loss

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.column_stack([1 - (0.15 + 0.7 * y), 0.15 + 0.7 * y])  # right, confident
    noise = rng.dirichlet([1, 1], size=400)  # knows nothing
    settings = {"names": ["good", "noise"]}
    best = nested_oof_loss("best", [good, noise], y, "binary", **settings)
    averaged = nested_oof_loss("voting", [good, noise], y, "binary", **settings)
    assert best < averaged  # averaging with a member that knows nothing hurts
    # two members that each know half the rows: combining them beats either alone
    half = rng.random(400) < 0.5
    first = np.where(half[:, None], good, 0.5)
    second = np.where(half[:, None], 0.5, good)
    settings = {"names": ["a", "b"]}
    assert nested_oof_loss("voting", [first, second], y, "binary", **settings) < \
        nested_oof_loss("best", [first, second], y, "binary", **settings)


def test_stacking_fitted_without_a_rare_class_still_gives_every_class_a_column():
    """A class whose few rows all went to test is in no training row: the meta-learner never saw
    it, but the ensemble's probabilities keep one column per class (0 for that one)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)  # 4 classes; class 3 has no training row
    member = rng.dirichlet(np.ones(4), 120)
    member[np.arange(120), y] += 1.0
    member /= member.sum(axis=1, keepdims=True)
    combiner = build_combiner("stacking", [member], y, "multiclass", names=["m"])
    out = combiner.combine([member])
    assert out.shape == (120, 4) and np.allclose(out[:, 3], 0) and np.allclose(out.sum(axis=1), 1)
    assert (out.argmax(axis=1) == y).mean() > 0.9


def test_the_selection_metric_decides_which_member_greedy_keeps():
    """A member that ranks well but is over-confident (trees on rare positives) and one that is
    calibrated but ranks worse: ROC AUC keeps the first, the log loss the second."""
    from fitwell.ensemble.combine import greedy_weights, selection_metric

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    score = y + rng.normal(scale=0.8, size=2000)
    ranker = 1 / (1 + np.exp(-8 * (score - 0.5)))  # good order, probabilities pushed to 0 and 1
    calibrated_score = y + rng.normal(scale=1.6, size=2000)
    calibrated = np.clip(0.1 + 0.5 * (calibrated_score - calibrated_score.mean()) / 3, 0.01, 0.99)
    outputs = [np.column_stack([1 - p, p]) for p in (ranker, calibrated)]
    assert greedy_weights(outputs, y, "binary", 10, "roc_auc")[0] > 0.5
    assert greedy_weights(outputs, y, "binary", 10, "log_loss")[1] > 0.5
    assert selection_metric("binary", "auto") == "roc_auc" and selection_metric("regression", "auto") == "mse"


def test_the_combiners_roc_auc_is_scikit_learns_with_ties_and_unsorted_scores():
    """The binary selection metric is computed from ranks (no input checks): the same number as
    scikit-learn's roc_auc_score, ties counted a half, on scores rounded to make many ties."""
    from sklearn.metrics import roc_auc_score

    from fitwell.ensemble.combine import ensemble_loss, rank_auc

    rng = np.random.default_rng(0)
    for decimals in (0, 1, 2, 6):
        y = rng.integers(0, 2, 997)
        score = np.round(rng.random(997) + 0.4 * y, decimals)
        assert rank_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        output = np.c_[1 - score, score]
        assert ensemble_loss("binary", y, output, "roc_auc") == pytest.approx(1 - roc_auc_score(y, score),
                                                                              abs=1e-12)
