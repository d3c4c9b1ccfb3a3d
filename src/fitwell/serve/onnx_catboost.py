"""CatBoost on a table with categorical columns, as ONNX ops, for ``fitwell export`` of an ensemble.

CatBoost's own ONNX export takes numeric features only. Its categorical splits compare a *CTR* (a
statistic of the target over the training rows sharing the row's category, or combination of
categories and binarized numbers -- a "projection") with a border. A CTR's value depends on the
row only through its projection's values, and the training rows hold every combination that has a
value of its own; any other combination gets the prior's. So each categorical split is a lookup:
the member keeps its training rows' distinct category codes (``category_rows_``), and here each
projection's combinations seen in training, plus one never seen, are sent through CatBoost itself
(``calc_leaf_indexes``: an oblivious tree's leaf index holds its k-th split's outcome in bit k),
which gives every split's outcome per combination without re-implementing CatBoost's hashing. The
graph maps a row's codes to its combination (LabelEncoder), gathers the outcomes, compares the
numeric splits in float32 as CatBoost does, and sums the leaf values of the leaves so addressed in
double, as CatBoost does.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto

from fitwell.errors import UserError
from fitwell.serve.onnx_graph import probabilities_of

# losses whose prediction is the raw sum (value) or its sigmoid / softmax; any other (Poisson,
# Tweedie, LogLinQuantile: exp of the sum; MultiClassOneVsAll) is refused
LOSSES = {"Logloss": "binary", "CrossEntropy": "binary", "MultiClass": "multiclass", "RMSE": "value",
          "MAE": "value", "MAPE": "value", "Quantile": "value", "Expectile": "value", "Huber": "value"}


PROBE_ROWS = 20_000  # combinations sent through CatBoost at once


class Projection:
    """The category columns and binarized numbers one set of categorical splits reads, the
    outcome of each of those splits per combination of them (probed), and where each split sits."""

    def __init__(self, cats: tuple[int, ...], floats: dict[int, list[float]]):
        self.cats, self.floats = cats, floats  # columns of the tree view; float column -> borders
        self.splits: list[tuple[int, int]] = []  # (tree, depth) of each split reading this projection


def dump(model) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "member.json"
        model.save_model(str(path), format="json")
        return json.loads(path.read_text())


def refuse(name: str, why: str) -> UserError:
    return UserError(f"ensemble member {name!r} (catboost) cannot be exported to ONNX: {why}. To export,"
                     f" train with members that convert (--preset fast, or ensemble.members without"
                     f" {name!r}); fitwell serve serves this run as it is")


def catboost_categories(g, estimator, name: str, X: str, classify: bool) -> str:
    """A fitted CatBoost member with categorical columns on the tree view ``X`` (double [N, k]): the
    class probabilities [N, c] or the value [N, 1], as doubles."""
    rows = getattr(estimator, "category_rows_", None)
    if rows is None:
        raise refuse(name, "it was trained by a fitwell before category rows were kept; train again")
    model = estimator.estimator_
    loss = str(model.get_all_params().get("loss_function", "")).split(":")[0]
    task = LOSSES.get(loss)
    if task is None:
        raise refuse(name, f"its loss {loss!r} is not one fitwell rebuilds")
    tree_dump = dump(model)
    if "oblivious_trees" not in tree_dump:
        raise refuse(name, "its trees are not symmetric (grow_policy other than SymmetricTree)")
    trees = tree_dump["oblivious_trees"]
    projections, numeric = read_splits(tree_dump, name)
    columns = [int(c) for c in estimator.categorical]
    sources, order = [], []
    if numeric:
        sources.append(numeric_bits(g, X, tree_dump, numeric))
        order += [at for at, _, _ in numeric]
    for projection in projections.values():
        codes, seen = combinations(rows, columns, projection)
        outcome = probe(estimator, rows, columns, projection, seen)
        sources.append(projection_bits(g, X, projection, codes, seen, outcome))
        order += projection.splits
    bits = sources[0] if len(sources) == 1 else g.op("Concat", sources, axis=1)
    return leaf_sum(g, bits, order, trees, tree_dump["scale_and_bias"], task, classify)


def read_splits(tree_dump: dict, name: str):
    """The projections of the categorical splits, and the numeric splits as ((tree, depth), column,
    border), from CatBoost's JSON: a split's ``split_index`` counts the float features' borders,
    then the one-hot features' values (a categorical feature's ``values``), then the CTRs' borders."""
    info = tree_dump["features_info"]
    float_column = {f["feature_index"]: f["flat_feature_index"] for f in info.get("float_features", [])}
    cat_column = {c["feature_index"]: c["flat_feature_index"] for c in info.get("categorical_features", [])}
    offset = sum(len(f.get("borders") or []) for f in info.get("float_features", []))
    offset += sum(len(c.get("values") or []) for c in info.get("categorical_features", []))  # one-hot
    ctr_at = {}
    for ctr in info.get("ctrs", []):
        for border in ctr["borders"]:
            ctr_at[offset] = (ctr, border)
            offset += 1
    projections: dict[tuple, Projection] = {}
    numeric = []
    for t, tree in enumerate(tree_dump["oblivious_trees"]):
        for k, split in enumerate(tree["splits"] or []):  # a tree of depth 0 has none
            kind = split["split_type"]
            if kind == "FloatFeature":
                numeric.append(((t, k), float_column[split["float_feature_index"]], float(split["border"])))
                continue
            if kind == "OneHotFeature":
                cats, floats = (cat_column[split["cat_feature_index"]],), {}
            elif kind == "OnlineCtr" and split["split_index"] in ctr_at:
                ctr, border = ctr_at[split["split_index"]]
                if not np.isclose(border, split["border"]):
                    raise refuse(name, "its CTR splits do not line up with its CTRs' borders")
                cats, floats = elements(ctr["elements"], cat_column, float_column, name)
            else:
                raise refuse(name, f"it splits on a {kind} feature, which fitwell does not rebuild")
            key = (cats, tuple((c, tuple(b)) for c, b in sorted(floats.items())))
            projections.setdefault(key, Projection(cats, floats)).splits.append((t, k))
    return projections, numeric


def elements(items: list[dict], cat_column: dict, float_column: dict, name: str):
    """The category columns (sorted) and {float column: sorted borders} of a CTR's projection."""
    cats, floats = set(), {}
    for item in items:
        if "cat_feature_index" in item:
            cats.add(cat_column[item["cat_feature_index"]])
        elif "float_feature_index" in item and "border" in item:
            floats.setdefault(float_column[item["float_feature_index"]], set()).add(float(item["border"]))
        else:
            raise refuse(name, f"a CTR combines {item.get('combination_element')!r}, which fitwell does"
                               " not rebuild")
    if not cats:
        raise refuse(name, "a CTR reads no categorical column")
    return tuple(sorted(cats)), {c: sorted(b) for c, b in floats.items()}


def combinations(rows: np.ndarray, columns: list[int], projection: Projection):
    """Each category column's known codes (sorted), and the projection's combinations of codes seen
    in training (one per row of the result, the codes in ``projection.cats`` order)."""
    at = [columns.index(c) for c in projection.cats]
    seen = np.unique(rows[:, at], axis=0)
    return [np.unique(rows[:, i]) for i in at], seen


def probe(estimator, rows: np.ndarray, columns: list[int], projection: Projection, seen: np.ndarray):
    """[combinations x splits] 0/1 (uint8): each of the projection's splits' outcome for each seen
    combination and then one never seen, each crossed with the numbers' regions (region-minor)."""
    regions = [len(b) + 1 for b in projection.floats.values()]
    unseen = np.array([[rows[:, columns.index(c)].max() + 1 for c in projection.cats]])
    cat_part = np.concatenate([seen, unseen])
    width = len(estimator.estimator_.feature_names_)
    probe_rows = np.zeros((len(cat_part) * int(np.prod(regions, dtype=np.int64)), width))
    probe_rows[:, columns] = rows[0]
    r = 0
    for codes in cat_part:
        for region in itertools.product(*(range(n) for n in regions)):
            probe_rows[r, list(projection.cats)] = codes
            for (column, borders), where in zip(projection.floats.items(), region, strict=True):
                probe_rows[r, column] = borders[where] if where < len(borders) else \
                    np.nextafter(np.float32(borders[-1]), np.float32(np.inf))
            r += 1
    trees, depths = (np.asarray(x) for x in zip(*projection.splits, strict=True))
    outcome = np.empty((len(probe_rows), len(trees)), dtype=np.uint8)
    for start in range(0, len(probe_rows), PROBE_ROWS):  # [rows x all trees] of leaf indexes: in parts
        part = estimator.library_rows(probe_rows[start:start + PROBE_ROWS])
        leaves = np.asarray(estimator.estimator_.calc_leaf_indexes(part))
        outcome[start:start + PROBE_ROWS] = (leaves[:, trees] >> depths) & 1
    return outcome


def code_column(g, X: str, column: int) -> str:
    """Column ``column`` of ``X`` as CatBoost was given it: float32 codes, missing as -1."""
    value = g.op("Gather", [X, g.const([column], np.int64)], axis=1)
    value = g.op("Where", [g.op("IsNaN", [value]), g.const(-1.0, np.float64), value])
    return g.op("Cast", [value], to=TensorProto.FLOAT)


def projection_bits(g, X: str, projection: Projection, codes: list[np.ndarray], seen: np.ndarray,
                    outcome: np.ndarray) -> str:
    """[N, splits] double: the outcome of each of the projection's splits for each row, looked up
    by the row's combination (the unseen one's outcome when the combination was not in training)."""
    if np.prod([len(c) + 1.0 for c in codes]) > 2.0 ** 62:
        raise UserError("a CatBoost member combines categorical columns with too many values to"
                        " export (over 2^62 combinations); train without CatBoost to export")
    key, keys, stride = None, np.zeros(len(seen), dtype=np.int64), 1
    for i, (column, known) in enumerate(zip(projection.cats, codes, strict=True)):
        index = g.op("LabelEncoder", [code_column(g, X, column)], domain="ai.onnx.ml",
                     keys_floats=[float(c) for c in known], values_int64s=list(range(len(known))),
                     default_int64=len(known))
        term = g.op("Mul", [index, g.const(stride, np.int64)])
        key = term if key is None else g.op("Add", [key, term])
        keys += np.searchsorted(known, seen[:, i]).astype(np.int64) * stride
        stride *= len(known) + 1
    combo = g.op("LabelEncoder", [g.op("Reshape", [key, g.const([-1], np.int64)])], domain="ai.onnx.ml",
                 keys_int64s=[int(k) for k in keys], values_int64s=list(range(len(keys))),
                 default_int64=len(keys))
    for column, borders in projection.floats.items():  # region-minor, as ``probe`` sent them
        value = g.op("Cast", [g.op("Gather", [X, g.const([column], np.int64)], axis=1)], to=TensorProto.FLOAT)
        above = g.op("Greater", [value, g.const(np.asarray(borders, dtype=np.float32))])
        region = g.op("ReduceSum", [g.op("Cast", [above], to=TensorProto.INT64), g.const([1], np.int64)],
                      keepdims=0)
        combo = g.op("Add", [g.op("Mul", [combo, g.const(len(borders) + 1, np.int64)]), region])
    return g.op("Cast", [g.op("Gather", [g.const(outcome), combo], axis=0)], to=TensorProto.DOUBLE)


def numeric_bits(g, X: str, tree_dump: dict, numeric: list) -> str:
    """[N, splits] double: float32(x) > border for each numeric split (NaN as the model treats it)."""
    treatment = {f["flat_feature_index"]: f.get("nan_value_treatment", "AsIs")
                 for f in tree_dump["features_info"].get("float_features", [])}
    columns = [column for _, column, _ in numeric]
    value = g.op("Cast", [g.op("Gather", [X, g.const(columns, np.int64)], axis=1)], to=TensorProto.FLOAT)
    above = g.op("Greater", [value, g.const(np.asarray([b for _, _, b in numeric], dtype=np.float32))])
    if any(treatment.get(c) == "AsTrue" for c in columns):
        as_true = g.const(np.asarray([treatment.get(c) == "AsTrue" for c in columns]))
        above = g.op("Or", [above, g.op("And", [g.op("IsNaN", [value]), as_true])])
    return g.op("Cast", [above], to=TensorProto.DOUBLE)


def leaf_sum(g, bits: str, order: list, trees: list, scale_and_bias, task: str, classify: bool) -> str:
    """Each tree's leaf (bit k of its index = its k-th split), their values summed, scaled and
    biased: probabilities [N, c] or the value [N, 1]."""
    weights = np.zeros((len(order), len(trees)))
    for row, (t, k) in enumerate(order):
        weights[row, t] = 2.0 ** k
    dims = len(np.atleast_1d(scale_and_bias[1])) or 1
    offsets, tables, start = [], [], 0
    for tree in trees:
        values = np.asarray(tree["leaf_values"], dtype=np.float64).reshape(-1, dims)
        offsets.append(start)
        tables.append(values)
        start += len(values)
    leaf = g.op("Cast", [g.op("MatMul", [bits, g.const(weights)])], to=TensorProto.INT64)
    leaf = g.op("Add", [leaf, g.const(np.asarray(offsets, dtype=np.int64))])
    summed = g.op("ReduceSum", [g.op("Gather", [g.const(np.concatenate(tables)), leaf], axis=0),
                                g.const([1], np.int64)], keepdims=0)
    scale, bias = scale_and_bias
    raw = g.op("Add", [g.op("Mul", [summed, g.const(float(scale), np.float64)]),
                       g.const(np.asarray(bias or [0.0] * dims, dtype=np.float64).reshape(1, -1))])
    if task == "value" or not classify:
        return raw
    return probabilities_of(g, raw, task)
