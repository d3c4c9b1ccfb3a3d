"""Tree models as ONNX graph pieces, for ``fitwell export`` of an ensemble.

LightGBM and XGBoost go through onnxmltools and CatBoost through its own ONNX export (numeric
features only: CatBoost refuses categorical ones). scikit-learn's HistGradientBoosting is
re-expressed here as an ``ai.onnx.ml`` TreeEnsembleRegressor: skl2onnx's converter drops its
categorical splits (they would silently predict something else) and fails on scikit-learn 1.9's
boolean node fields. A categorical split becomes one extra input column -- 1 when the row's category
is in the split's left set, NaN when it is missing -- so the tree keeps one node per split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto

from fitwell.errors import UserError
from fitwell.serve.onnx_graph import probabilities_of

CONVERTER_OPSET = 15  # the newest default-domain opset onnxmltools' converters write


def float_input(g, X: str) -> str:
    return g.op("Cast", [X], to=TensorProto.FLOAT)


def boosted(g, estimator, name: str, X: str, classify: bool) -> str:
    """A fitted LightGBM / XGBoost / CatBoost model on the tree view ``X`` (double [N, k]): the
    class probabilities [N, c] or the value [N, 1], as doubles."""
    kind = estimator.kind
    if kind == "catboost":
        graph = catboost_graph(estimator.estimator_, name, estimator.categorical)
    else:
        graph = onnxmltools_graph(estimator.estimator_, kind, name, classify)
    return converted_output(g, graph, X, classify)


def converted_output(g, graph, X: str, classify: bool) -> str:
    """A converter's graph (label + probabilities, or a value) fed the tree view ``X`` as float32:
    the probabilities [N, c] or the value [N, 1], as doubles."""
    outputs = g.merge(graph, [float_input(g, X)])
    value = g.op("Cast", [outputs[1] if classify else outputs[0]], to=TensorProto.DOUBLE)
    return value if classify else g.op("Reshape", [value, g.const([-1, 1], np.int64)])


def onnxmltools_graph(model, kind: str, name: str, classify: bool):
    """A LightGBM or XGBoost model converted by onnxmltools (float32 input [N, k])."""
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    convert = convert_lightgbm if kind == "lightgbm" else convert_xgboost
    extra = {"zipmap": False} if kind == "lightgbm" and classify else {}
    try:
        return convert(model, initial_types=[("x", FloatTensorType([None, model.n_features_in_]))],
                       target_opset=CONVERTER_OPSET, **extra)
    except Exception as err:  # the converters raise RuntimeError, NotImplementedError, ...
        raise UserError(f"ensemble member {name!r} ({kind}) cannot be converted to ONNX by onnxmltools:"
                        f" {str(err).splitlines()[0][:240]}") from err


def catboost_graph(model, name: str, categorical):
    import onnx

    if len(categorical):
        raise UserError(f"ensemble member {name!r} (catboost) cannot be exported to ONNX: CatBoost's own"
                        " ONNX export takes numeric features only and this table has categorical"
                        " columns. To export, train with members that convert (--preset fast, or"
                        f" ensemble.members without {name!r}); fitwell serve serves this run as it is")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "member.onnx"
        model.save_model(str(path), format="onnx")
        return onnx.load(str(path))


def hgb(g, estimator, X: str, task: str) -> str:
    """A fitted HistGradientBoosting model on ``X`` (double [N, k]): probabilities [N, c] or the
    value [N, 1], as doubles."""
    link = type(estimator._loss.link).__name__
    if link not in ("IdentityLink", "LogitLink", "MultinomialLogit"):
        raise UserError(f"HistGradientBoosting with loss {estimator.loss!r} ({link}) cannot be exported"
                        " to ONNX yet; the default losses can")
    X = hgb_columns(g, estimator, X)
    trees = [(k, p) for iteration in estimator._predictors for k, p in enumerate(iteration)]
    splits = [(t, i) for t, (_, p) in enumerate(trees) for i in np.flatnonzero(
        p.nodes["is_categorical"] & ~p.nodes["is_leaf"].astype(bool))]
    if splits:
        X = g.op("Concat", [X, membership(g, trees, splits, X)], axis=1)
    base = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    raw = tree_ensemble(g, trees, splits, X, base, estimator.n_features_in_)
    raw = g.op("Cast", [raw], to=TensorProto.DOUBLE)
    if link == "IdentityLink":
        return raw
    return probabilities_of(g, raw, "binary" if link == "LogitLink" else "multiclass")


def hgb_columns(g, estimator, X: str) -> str:
    """The columns as the trees see them: scikit-learn's own ordinal encoder puts the categorical
    columns first (each value replaced by its index among the categories that model saw, an unseen
    one by NaN), the numbers after."""
    encoder = estimator._preprocessor
    if encoder is None:
        return X
    parts = []
    for _, transformer, mask in encoder.transformers_:
        for j, column in enumerate(np.flatnonzero(mask)):
            value = g.op("Gather", [X, g.const([int(column)], np.int64)], axis=1)
            if hasattr(transformer, "categories_"):
                known = [float(c) for c in transformer.categories_[j] if c == c]
                as_float = g.op("Cast", [value], to=TensorProto.FLOAT)
                index = g.op("LabelEncoder", [as_float], domain="ai.onnx.ml", keys_floats=known,
                             values_floats=[float(i) for i in range(len(known))], default_float=float("nan"))
                value = g.op("Cast", [index], to=TensorProto.DOUBLE)
            parts.append(value)
    return g.op("Concat", parts, axis=1)


def left_set(predictor, node) -> list[int]:
    """The categories a categorical split sends left (its 256-bit bitset)."""
    words = np.ascontiguousarray(predictor.raw_left_cat_bitsets[node["bitset_idx"]], dtype="<u4")
    return np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")).tolist()


def membership(g, trees, splits, X: str) -> str:
    """[N, splits]: 1.0 when the row's category is in that split's left set, 0.0 when not, NaN when
    missing. Each categorical column becomes a small index once (missing -> a slot holding NaN,
    beyond every set -> a slot holding 0); then one Gather picks each split's column and a
    GatherElements reads the table: two passes over [N, splits], which dominate the graph's time."""
    sets = [left_set(trees[t][1], trees[t][1].nodes[i]) for t, i in splits]
    features = [int(trees[t][1].nodes[i]["feature_idx"]) for t, i in splits]
    width = max(max(s, default=0) for s in sets) + 3  # + a slot no set holds + the missing slot
    table = np.zeros((len(splits), width))
    for row, chosen in enumerate(sets):
        table[row, chosen] = 1.0
    table[:, -1] = np.nan
    columns = sorted(set(features))
    values = g.op("Gather", [X, g.const(columns, np.int64)], axis=1)  # [N, categorical columns]
    inside = g.op("Clip", [values, g.const(0.0, np.float64), g.const(float(width - 2), np.float64)])
    index = g.op("Cast", [g.op("Where", [g.op("IsNaN", [values]), g.const(float(width - 1), np.float64),
                                         inside])], to=TensorProto.INT64)
    per_split = g.op("Gather", [index, g.const([columns.index(f) for f in features], np.int64)], axis=1)
    return g.op("GatherElements", [g.const(table.T, np.float64), per_split], axis=0)  # [n, s] = T[i, s]


def tree_ensemble(g, trees, splits, X: str, base: np.ndarray, columns: int) -> str:
    """One TreeEnsembleRegressor summing every tree's leaf into its class's column, thresholds as
    doubles; a split on a number goes left when value <= threshold, on a category when the
    membership column is 1; missing values go where the model learnt."""
    split_column = {key: columns + j for j, key in enumerate(splits)}
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         "target_treeids", "target_nodeids", "target_ids")}
    thresholds, weights, base = [], [], base.copy()
    for t, (k, predictor) in enumerate(trees):
        nodes = predictor.nodes
        if nodes[0]["is_leaf"]:  # a tree with no split adds a constant
            base[k] += float(nodes[0]["value"])
            continue
        for i, node in enumerate(nodes):
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(i)
            if node["is_leaf"]:
                a["nodes_featureids"].append(0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                thresholds.append(0.0)
                a["target_treeids"].append(t)
                a["target_nodeids"].append(i)
                a["target_ids"].append(k)
                weights.append(float(node["value"]))
                continue
            categorical = bool(node["is_categorical"])
            a["nodes_featureids"].append(split_column[(t, i)] if categorical else int(node["feature_idx"]))
            a["nodes_modes"].append("BRANCH_GT" if categorical else "BRANCH_LEQ")
            thresholds.append(0.5 if categorical else float(node["num_threshold"]))
            a["nodes_truenodeids"].append(int(node["left"]))
            a["nodes_falsenodeids"].append(int(node["right"]))
            a["nodes_missing_value_tracks_true"].append(int(bool(node["missing_go_to_left"])))
    if not a["nodes_treeids"]:  # every tree a constant: the base values alone
        zero = g.op("Mul", [g.op("Gather", [X, g.const([0], np.int64)], axis=1), g.const(0.0, np.float64)])
        return g.op("Add", [g.op("Where", [g.op("IsNaN", [zero]), g.const(0.0, np.float64), zero]),
                            g.const(base[None, :], np.float64)])
    from onnx import numpy_helper

    return g.op("TreeEnsembleRegressor", [X], domain="ai.onnx.ml", n_targets=len(base),
                aggregate_function="SUM", post_transform="NONE",
                base_values_as_tensor=numpy_helper.from_array(base.astype(np.float64)),
                nodes_values_as_tensor=numpy_helper.from_array(np.asarray(thresholds, dtype=np.float64)),
                target_weights_as_tensor=numpy_helper.from_array(np.asarray(weights, dtype=np.float64)), **a)
