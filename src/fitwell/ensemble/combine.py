"""Combiners: how members' outputs become one prediction.

Every combiner learns from the members' out-of-fold (OOF) outputs on the train split and is then
applied to the outputs of the members refitted on the whole train split: scikit-learn's
StackingClassifier/Regressor scheme (the default ``stack_on: probability`` reproduces its
inputs exactly; ``logit`` stacks log-odds). fitwell computes each member's OOF outputs once (with
scikit-learn's ``cross_val_predict``) and shares them between stacking, the greedy weight search,
the diversity table and the member scores, instead of letting each scikit-learn ensemble refit
the members again; tests/ensemble/test_combine.py checks that the stacking here gives
StackingClassifier's predictions.

An output is a probability matrix (n, classes) for classifiers and a vector (n,) for regressors.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone


def stack_features(outputs: list[np.ndarray], task: str, stack_on: str = "probability") -> np.ndarray:
    """The meta-learner's inputs: each member's outputs side by side.

    ``probability`` (the default) builds them as StackingClassifier does (probabilities, the first
    column dropped for a binary task). ``logit`` gives the log-odds a logistic meta-learner is
    linear in: log(p1 / p0) for binary, log p for multiclass. Neither wins everywhere on the
    bundled datasets (docs/benchmarks.md, "Ensembles").
    """
    if task == "regression":
        return np.column_stack(outputs)
    if stack_on == "probability":
        return np.hstack([o[:, 1:] for o in outputs]) if task == "binary" else np.hstack(outputs)
    logs = [np.log(np.clip(o, 1e-7, 1.0)) for o in outputs]
    if task == "binary":
        return np.hstack([lg[:, 1:] - lg[:, :1] for lg in logs])
    return np.hstack(logs)


def build_meta_learner(name: str, task: str, seed: int):
    """scikit-learn's stacking defaults for ``linear`` (LogisticRegression, RidgeCV), or a tree model."""
    classify = task != "regression"
    if name == "linear":
        from sklearn.linear_model import LogisticRegression, RidgeCV

        # max_iter: log-odds inputs are unscaled, and lbfgs stopped at its default 100 on iris;
        # tol 1e-3: on a 10,000-row 7-class table's OOF probabilities the fit took 0.22 s instead of
        # 0.53 (26 iterations, not 64), its log loss 0.7006 instead of 0.6987; it is fitted 6 times
        return LogisticRegression(max_iter=1000, tol=1e-3) if classify else RidgeCV()
    if name == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
        return cls(n_estimators=100, num_leaves=7, learning_rate=0.05, random_state=seed, verbose=-1)
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return cls(max_leaf_nodes=7, random_state=seed)


class Stacking:
    """A meta-learner fitted on the members' OOF outputs."""

    kind = "stacking"

    def __init__(self, meta_learner, task: str, stack_on: str = "probability"):
        self.meta_learner = meta_learner
        self.task = task
        self.stack_on = stack_on

    def fit(self, outputs: list[np.ndarray], y: np.ndarray) -> Stacking:
        features = stack_features(outputs, self.task, self.stack_on)
        self.meta_learner_ = clone(self.meta_learner).fit(features, y)
        return self

    def combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        features = stack_features(outputs, self.task, self.stack_on)
        if self.task == "regression":
            return np.asarray(self.meta_learner_.predict(features), dtype=np.float64)
        from fitwell.ensemble.members import aligned_proba  # a class no training row of it held

        proba = self.meta_learner_.predict_proba(features)
        return aligned_proba(self.meta_learner_, proba, outputs[0].shape[1])

    def describe(self) -> dict:
        return {"method": "stacking", "meta_learner": type(self.meta_learner).__name__,
                "stack_on": self.stack_on}


class Voting:
    """Weighted average of probabilities (soft) or of one-hot votes (hard); a weighted mean for
    regression. Hard voting's "probabilities" are the weighted vote shares."""

    kind = "voting"

    def __init__(self, weights: list[float], task: str, voting: str = "soft", method: str = "voting"):
        self.weights = list(weights)
        self.task = task
        self.voting = voting
        self.method = method

    def fit(self, outputs: list[np.ndarray], y: np.ndarray) -> Voting:
        total = float(sum(self.weights))
        if total <= 0:
            raise ValueError("voting weights are all zero; give at least one member a weight above 0")
        self.weights_ = np.asarray(self.weights, dtype=np.float64) / total
        return self

    def combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        if self.task != "regression" and self.voting == "hard":
            outputs = [np.eye(o.shape[1])[o.argmax(axis=1)] for o in outputs]
        return sum(w * np.asarray(o, dtype=np.float64) for w, o in zip(self.weights_, outputs, strict=True))

    def describe(self) -> dict:
        return {"method": self.method, "voting": self.voting, "weights": [float(w) for w in self.weights_]}


SELECTION_METRICS = ("auto", "log_loss", "roc_auc", "accuracy", "mse")


def selection_metric(task: str, metric: str | None) -> str:
    """``auto``: ROC AUC for a binary task (trees' out-of-fold probabilities are often badly
    calibrated on rare positives, and the log loss then prefers a member that ranks worse), log loss
    for multiclass, mean squared error for regression."""
    if metric in (None, "auto"):
        return {"binary": "roc_auc", "multiclass": "log_loss"}.get(task, "mse")
    return metric


def ensemble_loss(task: str, y: np.ndarray, output: np.ndarray, metric: str | None = None) -> float:
    """What greedy selection and the choice of combiner lower: log loss for classifiers and mean
    squared error for regressors by default, or ``metric`` (1 - ROC AUC, 1 - accuracy)."""
    if task == "regression":
        return float(np.mean((np.asarray(y, dtype=np.float64) - np.asarray(output, dtype=np.float64)) ** 2))
    if metric == "roc_auc" and task == "binary" and len(np.unique(y)) == 2:
        return 1.0 - rank_auc(y, output[:, 1])
    if metric == "accuracy":
        return 1.0 - float((output.argmax(axis=1) == y).mean())
    # scikit-learn's log_loss, without its input checks (greedy selection calls this rounds x members
    # times: 1 s of a 20 s run on a 10,000-row, 7-class table); rows are probabilities summing to 1
    output = np.asarray(output, dtype=np.float64)
    chosen = output[np.arange(len(y)), np.asarray(y, dtype=np.int64)] / output.sum(axis=1)
    return float(-np.mean(np.log(np.clip(chosen, 1e-15, 1.0))))


def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from the positives' average ranks (Mann-Whitney U; ties count a half, as in
    scikit-learn's ``roc_auc_score``) without its input checks: greedy selection and the choice of
    combiner call it hundreds of times a run (3.1 s of a 9 s ``fast`` run on a 10,000-row table
    through scikit-learn's).

    Example:
        >>> rank_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    from scipy.stats import rankdata

    positive = np.asarray(y) == np.max(y)
    count = int(positive.sum())
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - count * (count + 1) / 2) / (count * (len(positive) - count)))


def greedy_weights(outputs: list[np.ndarray], y: np.ndarray, task: str, rounds: int = 50,
                   metric: str | None = None) -> list[float]:
    """Ensemble selection with replacement (Caruana et al., 2004): each round adds the member
    whose addition most lowers the OOF loss of the running average; weights are the counts.

    Example:
        >>> greedy_weights([np.array([0.0, 1.0]), np.array([1.0, 1.0])], np.array([0.0, 1.0]),
        ...                "regression", rounds=4)
        [1.0, 0.0]
    """
    counts = np.zeros(len(outputs))
    total = np.zeros_like(np.asarray(outputs[0], dtype=np.float64))
    for step in range(1, rounds + 1):
        losses = [ensemble_loss(task, y, (total + o) / step, metric) for o in outputs]
        best = int(np.argmin(losses))
        counts[best] += 1
        total = total + outputs[best]
    return [float(c) for c in counts / counts.sum()]


def build_combiner(method: str, outputs: list[np.ndarray], y: np.ndarray, task: str, *,
                   names: list[str], voting: str = "soft", weights: dict[str, float] | None = None,
                   meta_learner: str = "linear", stack_on: str = "probability", greedy_rounds: int = 50,
                   seed: int = 0, metric: str | None = None):
    """A fitted combiner of ``method`` (stacking, voting, greedy, best) from OOF outputs."""
    if method == "stacking":
        return Stacking(build_meta_learner(meta_learner, task, seed), task, stack_on).fit(outputs, y)
    if method == "voting":
        chosen = [float((weights or {}).get(n, 1.0)) for n in names]  # unnamed members weigh 1
        return Voting(chosen, task, voting).fit(outputs, y)
    if method == "greedy":
        chosen = greedy_weights(outputs, y, task, greedy_rounds, metric)
        return Voting(chosen, task, "soft", "greedy").fit(outputs, y)
    losses = [ensemble_loss(task, y, o, metric) for o in outputs]
    one_hot = [0.0] * len(outputs)
    one_hot[int(np.argmin(losses))] = 1.0
    return Voting(one_hot, task, "soft", "best").fit(outputs, y)


def nested_oof_loss(method: str, outputs: list[np.ndarray], y: np.ndarray, task: str, folds: int = 5,
                    seed: int = 0, **settings) -> float:
    """The combiner's own out-of-fold loss: fitted on the members' OOF outputs of k-1 folds of the
    training rows, scored on the fold left out -- evidence a combiner cannot fit to itself (a
    stacker scored on the rows it learnt from looks better than it is).

    Example:
        >>> y = np.array([0, 1] * 20); good = np.eye(2)[y] * 0.8 + 0.1; bad = np.full((40, 2), 0.5)
        >>> nested_oof_loss("best", [good, bad], y, "binary", names=["g", "b"]) < 0.3
        True
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "regression":
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    held_out = np.zeros_like(outputs[0], dtype=np.float64)
    try:
        splits = list(splitter.split(outputs[0], y))
    except ValueError:  # a class too small for k folds: no nested evidence, so never chosen
        return float("inf")
    for rest, held in splits:
        combiner = build_combiner(method, [o[rest] for o in outputs], y[rest], task, seed=seed, **settings)
        held_out[held] = combiner.combine([o[held] for o in outputs])
    return ensemble_loss(task, y, held_out, settings.get("metric"))


def error_correlation(outputs: list[np.ndarray], y: np.ndarray, task: str) -> np.ndarray:
    """Pearson correlation of the members' OOF errors: residuals for regression, 1 - the
    probability of the true class for classification. Low values mean members err differently."""
    if task == "regression":
        errors = [np.asarray(o, dtype=np.float64) - y for o in outputs]
    else:
        errors = [1.0 - o[np.arange(len(y)), y] for o in outputs]
    matrix = np.vstack(errors)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(matrix) if len(errors) > 1 else np.ones((1, 1))
