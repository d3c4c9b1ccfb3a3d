"""``fitwell export`` of an ensemble run: one ONNX graph from the raw columns to the combined
prediction.

The two input views members read (features.py) are rebuilt as graph ops from their fitted
objects: the ``nn`` view is the single-model preprocessing (export.py), the ``tree`` view numbers
with NaN for missing and each category's ordinal code (NaN when missing or unseen). Each member
joins as its own sub-graph (fitwell networks through ``torch.onnx``, trees through onnx_trees.py),
followed by the row renormalisation and the probability calibrator ``Member.output`` applies;
k-fold bags are the mean of their fold models. The combiner -- weighted voting, greedy weights,
"best", or stacking with the linear meta-learner (or LightGBM / HistGradientBoosting) -- is graph
ops as well, and a member whose weight is 0 is left out of the graph.

A member or combiner that cannot be expressed (CatBoost with asymmetric trees or a log-link loss,
AdaBoost and scikit-learn bagging wrappers, a ``module:Class`` estimator) is refused with its name.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from fitwell.ensemble.combine import Stacking, Voting
from fitwell.ensemble.members import (
    FitwellMemberClassifier,
    FitwellMemberRegressor,
    FoldBag,
)
from fitwell.errors import UserError
from fitwell.serve.onnx_graph import (
    calendar_columns,
    clean_number,
    column2d,
    label_output,
    lookup,
    network,
    preprocessing,
    probabilities_of,
    text_of,
    value_output,
    values_of_boolean,
)
from fitwell.serve.onnx_trees import boosted, converted_output, hgb, lightgbm, onnxmltools_graph

MEMBERS_THAT_EXPORT = ("fitwell networks, LightGBM, XGBoost, CatBoost (symmetric trees),"
                       " HistGradientBoosting, and their k-fold bags")


class Views:
    """The members' input views, each built once on first use."""

    def __init__(self, g, run):
        self.g, self.run, self.built = g, run, {}

    def __getitem__(self, view: str):
        if view not in self.built:
            pre = self.run.preprocessor
            self.built[view] = (preprocessing(self.g, pre) if view == "nn"
                                else tree_view(self.g, pre, self.run.ensemble.tree_view))
        return self.built[view]


def tree_view(g, pre, view) -> str:
    """TreeFeatures.transform as graph ops: [N, k] doubles."""
    from fitwell.serve.onnx_text import text_components

    columns = []
    for column in view.number_columns_:
        if view.plan.kinds[column] == "boolean":
            columns.append(values_of_boolean(g, pre, column))
        else:
            columns.append(clean_number(g, column))
    if view.date_parts_:
        columns.extend(calendar_columns(g, view.date_parts_, view.date_columns_))
    for column, text in zip(view.text_columns, getattr(view, "texts_", []), strict=True):
        columns.append(text_components(g, column, column, text))
    if view.encoder_ is not None:
        for column, categories in zip(view.category_columns_, view.encoder_.categories_, strict=True):
            keys = [c for c in categories if isinstance(c, str)]
            text = text_of(g, view, column, keys)
            code = lookup(g, text, keys, [list(categories).index(k) for k in keys], float("nan"))
            columns.append(column2d(g, code))
    return g.op("Concat", columns, axis=1) if len(columns) > 1 else columns[0]


def ensemble_graph(g, run) -> list:
    """The graph's nodes for ``run`` (an EnsembleRun) into ``g``; returns the output infos."""
    model, task = run.ensemble, run.task
    classes = 0 if task == "regression" else len(run.classes)
    views = Views(g, run)
    used = range(len(model.members))
    if isinstance(model.combiner, Voting):
        used = [i for i, w in enumerate(model.combiner.weights_) if w != 0]
    outputs = {i: member_output(g, views, model.members[i], task, classes) for i in used}
    combined = combine(g, model.combiner, outputs, task, classes)
    if task == "regression":
        return value_output(g, run, combined)
    g.op("Identity", [combined], name="probabilities")
    return label_output(g, run, TensorProto.DOUBLE)


def member_output(g, views: Views, member, task: str, classes: int) -> str:
    """What ``Member.output`` gives: probabilities [N, classes] (rows renormalised, then calibrated)
    or the scaled value [N, 1], as doubles."""
    out = estimator_output(g, member.estimator, member.name, views[member.view], task, classes)
    if task == "regression":
        return out
    out = g.op("Div", [out, g.op("ReduceSum", [out, g.const([1], np.int64)], keepdims=1)])
    if member.calibrator is not None:
        from fitwell.serve.onnx_calibration import calibrated

        out = calibrated(g, member.calibrator, out, classes, member.name)
    return out


def estimator_output(g, estimator, name: str, X, task: str, classes: int) -> str:
    classify = task != "regression"
    if isinstance(estimator, FoldBag):
        parts = [estimator_output(g, e, name, X, task, classes) for e in estimator.estimators]
        total = parts[0]
        for part in parts[1:]:
            total = g.op("Add", [total, part])
        return g.op("Div", [total, g.const(float(len(parts)), np.float64)])
    if isinstance(estimator, FitwellMemberClassifier | FitwellMemberRegressor):
        return fitwell_member(g, estimator, name, X, task)
    kind = type(estimator).__name__
    if kind == "TimeBoxed":  # a HistGradientBoosting model fitted against a deadline
        estimator, kind = estimator.estimator_, type(estimator.estimator_).__name__
    if kind in ("BoostedTreesClassifier", "BoostedTreesRegressor"):
        out = boosted(g, estimator, name, X, classify)
    elif kind.startswith("HistGradientBoosting"):
        out = hgb(g, estimator, X, task)
    else:
        raise UserError(f"ensemble member {name!r}: {kind} cannot be exported to ONNX; members that"
                        f" can: {MEMBERS_THAT_EXPORT}")
    return aligned(g, out, getattr(estimator, "classes_", None), classes) if classify else out


def fitwell_member(g, estimator, name: str, X, task: str) -> str:
    numeric, codes = X
    family = estimator.model_spec_["name"]
    try:
        net = network(estimator.model_, estimator.num_numeric, len(estimator.cardinalities), family)
    except UserError as err:
        raise UserError(f"ensemble member {name!r}: {err}") from err
    (raw,) = g.merge(net, [numeric, codes])
    raw = g.op("Cast", [raw], to=TensorProto.DOUBLE)
    return raw if task == "regression" else probabilities_of(g, raw, task)


def aligned(g, out: str, classes, total: int) -> str:
    """Probabilities in columns 0..total-1 when a fold's model saw only some classes."""
    if classes is None:
        return out
    classes = np.asarray(classes).astype(int)
    if len(classes) == total and (classes == np.arange(total)).all():
        return out
    spread = np.zeros((len(classes), total))
    spread[np.arange(len(classes)), classes] = 1.0
    return g.op("MatMul", [out, g.const(spread, np.float64)])


def combine(g, combiner, outputs: dict[int, str], task: str, classes: int) -> str:
    if isinstance(combiner, Voting):
        total = None
        for i, out in outputs.items():
            if task != "regression" and combiner.voting == "hard":
                index = g.op("ArgMax", [out], axis=1, keepdims=0)
                off_on = g.const([0.0, 1.0], np.float64)
                out = g.op("OneHot", [index, g.const(classes, np.int64), off_on], axis=-1)
            weighted = g.op("Mul", [out, g.const(float(combiner.weights_[i]), np.float64)])
            total = weighted if total is None else g.op("Add", [total, weighted])
        return total
    if isinstance(combiner, Stacking):
        features = stack_features(g, [outputs[i] for i in sorted(outputs)], task, combiner.stack_on)
        out = meta_output(g, combiner.meta_learner_, features, task)
        meta_classes = getattr(combiner.meta_learner_, "classes_", None)
        return out if task == "regression" else aligned(g, out, meta_classes, classes)
    raise UserError(f"the ensemble's combiner {type(combiner).__name__} cannot be exported to ONNX")


def stack_features(g, outputs: list[str], task: str, stack_on: str) -> str:
    """combine.stack_features as graph ops."""
    if task != "regression" and stack_on == "logit":
        logs = [g.op("Log", [g.op("Clip", [o, g.const(1e-7, np.float64), g.const(1.0, np.float64)])])
                for o in outputs]
        if task == "binary":
            second, first = g.const([1], np.int64), g.const([0], np.int64)
            outputs = [g.op("Sub", [g.op("Gather", [lg, second], axis=1),
                                    g.op("Gather", [lg, first], axis=1)]) for lg in logs]
        else:
            outputs = logs
    elif task == "binary":
        outputs = [g.op("Gather", [o, g.const([1], np.int64)], axis=1) for o in outputs]
    return g.op("Concat", outputs, axis=1) if len(outputs) > 1 else outputs[0]


def meta_output(g, meta, X: str, task: str) -> str:
    """The fitted meta-learner on the stacked features: probabilities or the value [N, 1]."""
    kind = type(meta).__name__
    if kind in ("LogisticRegression", "RidgeCV"):
        coef = np.atleast_2d(np.asarray(meta.coef_, dtype=np.float64))
        z = g.op("Add", [g.op("MatMul", [X, g.const(coef.T, np.float64)]),
                         g.const(np.atleast_1d(meta.intercept_).astype(np.float64), np.float64)])
        return z if kind == "RidgeCV" else probabilities_of(g, z, "binary" if coef.shape[0] == 1 else task)
    if kind.startswith("HistGradientBoosting"):
        return hgb(g, meta, X, task)
    if kind.startswith("LGBM"):
        classify = task != "regression"
        rebuilt = lightgbm(g, meta, X, classify)
        if rebuilt is not None:
            return rebuilt
        return converted_output(g, onnxmltools_graph(meta, "lightgbm", "meta-learner", classify), X, classify)
    raise UserError(f"the ensemble's meta-learner {kind} cannot be exported to ONNX")
