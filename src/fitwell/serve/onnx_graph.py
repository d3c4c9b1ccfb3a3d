"""The graph pieces ``fitwell export`` assembles: a Builder of nodes and constants, fitwell's
preprocessing re-expressed as ONNX ops from the fitted scikit-learn objects' parameters (no
converter knows fitwell's clipper, and this keeps one opset), a network through ``torch.onnx``, and
the outputs.

Strings are trimmed and lower-cased (ONNX ``StringNormalizer`` in the C locale, then
``StringSplit``/``StringConcat`` rejoin the words), infinities and values beyond float32 become
missing, then clipping, imputation (with missing-value indicators), scaling, one-hot and ordinal
codes (unseen categories to the unknown bucket), then the temperature, the sigmoid/softmax or the
target's scale.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

from fitwell.data.clean import FLOAT32_MAX
from fitwell.data.columns import BOOL_WORDS
from fitwell.data.preprocess import MISSING
from fitwell.errors import UserError

OPSET, ML_OPSET, IR_VERSION = 20, 3, 10
BOOLEAN_KEYS = {**BOOL_WORDS, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}


class Builder:
    """Nodes and constants of the graph around the network; every name starts with ``fw_``."""

    def __init__(self):
        self.nodes, self.constants, self.count = [], [], 0
        self.functions, self.imports = [], {"": OPSET, "ai.onnx.ml": ML_OPSET}

    def name(self, hint: str) -> str:
        self.count += 1
        return f"fw_{hint}_{self.count}"

    def const(self, value, dtype=None) -> str:
        array = np.asarray(value, dtype=dtype)
        if array.dtype.kind in "OUS":
            tensor = helper.make_tensor(self.name("c"), TensorProto.STRING, array.shape,
                                        [str(v).encode() for v in array.reshape(-1)])
        else:
            tensor = numpy_helper.from_array(array, self.name("c"))
        self.constants.append(tensor)
        return tensor.name

    def op(self, op: str, inputs: list[str], outputs: int = 1, domain: str = "", name: str | None = None,
           **attrs):
        out = [name] if name else [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, out, domain=domain or None, **attrs))
        return out[0] if outputs == 1 else out

    def merge(self, model, inputs: list[str]) -> list[str]:
        """Another graph (a member's network or trees) joined in: its names prefixed apart, its
        inputs fed by ``inputs``, a ZipMap at its end dropped; returns its output names."""
        from onnx import compose, version_converter

        self.count += 1
        if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET) < OPSET:
            model = version_converter.convert_version(model, OPSET)
        model = compose.add_prefix(model, f"fw{self.count}_")
        stored = {t.name for t in model.graph.initializer}
        feeds = [i.name for i in model.graph.input if i.name not in stored]
        for source, name in zip(inputs, feeds, strict=True):
            self.nodes.append(helper.make_node("Identity", [source], [name]))
        renamed = {}
        for node in model.graph.node:
            if node.op_type == "ZipMap":  # probabilities as a list of maps: keep the tensor before it
                renamed[node.output[0]] = node.input[0]
            else:
                self.nodes.append(node)
        self.constants.extend(model.graph.initializer)
        self.functions.extend(model.functions)
        for op in model.opset_import:
            domain = "" if op.domain == "ai.onnx" else op.domain
            self.imports[domain] = max(self.imports.get(domain, 0), op.version)
        return [renamed.get(o.name, o.name) for o in model.graph.output]

    def model(self, inputs: list, outputs: list):
        """The finished ModelProto, checked."""
        import onnx

        graph = helper.make_graph(self.nodes, "fitwell", inputs, outputs, self.constants)
        imports = [helper.make_opsetid(domain, version) for domain, version in self.imports.items()]
        model = helper.make_model(graph, opset_imports=imports, functions=self.functions,
                                  ir_version=IR_VERSION, producer_name="fitwell")
        onnx.checker.check_model(model)
        return model


def tidy(g: Builder, column: str, words: int) -> str:
    """A string column [N, 1] lower-cased and trimmed of spaces, as a 1-D [N] tensor, inner runs of
    spaces kept ("team  leader" stays apart from "team leader", as in fitwell); a value of more
    space-separated parts than any training category becomes a value no category has."""
    flat = g.op("Reshape", [column, g.const([-1], np.int64)])
    lower = g.op("StringNormalizer", [flat], case_change_action="LOWER", locale="C")
    parts, _ = g.op("StringSplit", [lower], outputs=2, delimiter=" ")  # "a  b" -> a, "", b
    rows = g.op("Slice", [g.op("Shape", [parts]), g.const([0], np.int64), g.const([1], np.int64)])
    width = g.op("Concat", [rows, g.const([words], np.int64)], axis=0)
    pad = g.op("Expand", [g.const([[""]], object), width])
    padded = g.op("Concat", [parts, pad], axis=1)
    filled = g.op("Cast", [g.op("Not", [g.op("Equal", [padded, g.const("", object)])])], to=TensorProto.INT32)
    first = g.op("ArgMax", [filled], axis=1, keepdims=1)  # the first and last part that is not a space
    last = g.op("ArgMax", [filled], axis=1, keepdims=1, select_last_index=1)
    positions = g.op("Add", [first, g.const(np.arange(words)[None, :], np.int64)])
    picked = g.op("GatherElements", [padded, positions], axis=1)
    span = g.op("Reshape", [g.op("Sub", [last, first]), g.const([-1], np.int64)])  # parts in the value - 1
    text = g.op("Gather", [picked, g.const(0, np.int64)], axis=1)
    for k in range(1, words):
        joined = g.op("StringConcat", [g.op("StringConcat", [text, g.const(" ", object)]),
                                       g.op("Gather", [picked, g.const(k, np.int64)], axis=1)])
        text = g.op("Where", [g.op("GreaterOrEqual", [span, g.const(k, np.int64)]), joined, text])
    too_long = g.op("GreaterOrEqual", [span, g.const(words, np.int64)])
    text = g.op("Where", [too_long, g.const("\x00unknown", object), text])
    any_part = g.op("ReduceMax", [filled, g.const([1], np.int64)], keepdims=0)
    blank = g.op("Equal", [any_part, g.const(0, np.int32)])
    return g.op("Where", [blank, g.const("", object), text])


def text_of(g: Builder, pre, column: str, keys: list) -> str:
    """The column's strings as fitwell's preprocessing sees them ([N], "" = missing)."""
    if not pre.normalize_strings:
        return g.op("Reshape", [column, g.const([-1], np.int64)])
    words = max([len(str(k).split(" ")) for k in keys] + [1])
    return tidy(g, column, words)


def lookup(g: Builder, text: str, keys: list, values: list, default) -> str:
    """``ai.onnx.ml.LabelEncoder``: strings to int64 or float values."""
    keys = [str(k) for k in keys]
    if isinstance(default, float):
        return g.op("LabelEncoder", [text], domain="ai.onnx.ml", keys_strings=keys,
                    values_floats=[float(v) for v in values], default_float=default)
    return g.op("LabelEncoder", [text], domain="ai.onnx.ml", keys_strings=keys,
                values_int64s=[int(v) for v in values], default_int64=int(default))


def column2d(g: Builder, vector: str, dtype: int = TensorProto.DOUBLE) -> str:
    return g.op("Cast", [g.op("Unsqueeze", [vector, g.const([1], np.int64)])], to=dtype)


def clean_number(g: Builder, column: str) -> str:
    """A number column with infinities and values beyond float32 as missing (NaN), as fitwell's
    cleaning makes them."""
    bad = g.op("Or", [g.op("IsInf", [column]), g.op("Greater", [g.op("Abs", [column]),
                                                                 g.const(FLOAT32_MAX, np.float64)])])
    return g.op("Where", [bad, g.const(np.nan, np.float64), column])


def numbers_block(g: Builder, pipeline, columns: list[str]) -> str:
    """Clip, impute (with indicators), scale: the ``numeric`` part of the ColumnTransformer."""
    cleaned = [clean_number(g, column) for column in columns]
    x = g.op("Concat", cleaned, axis=1) if len(cleaned) > 1 else cleaned[0]
    clipper, imputer, scaler = (pipeline.named_steps[k] for k in ("clip", "impute", "scale"))
    missing = g.op("IsNaN", [x])
    clipped = g.op("Min", [g.op("Max", [x, g.const(clipper.lower_, np.float64)]),
                           g.const(clipper.upper_, np.float64)])
    x = g.op("Where", [missing, x, clipped])
    parts = [g.op("Where", [missing, g.const(imputer.statistics_, np.float64), x])]
    if imputer.indicator_ is not None and len(imputer.indicator_.features_):
        flags = g.op("Gather", [missing, g.const(imputer.indicator_.features_, np.int64)], axis=1)
        parts.append(g.op("Cast", [flags], to=TensorProto.DOUBLE))
    x = g.op("Concat", parts, axis=1) if len(parts) > 1 else parts[0]
    return scale(g, scaler, x)


def dates_block(g: Builder, pipeline, columns: list[str]) -> str:
    """The calendar parts of date columns (days since 1970), imputed and scaled: the ``dates``
    part of the ColumnTransformer, ``fitwell.data.dates.calendar`` step by step."""
    parts, imputer, scaler = (pipeline.named_steps[k] for k in ("parts", "impute", "scale"))
    values = calendar_columns(g, parts.parts_, columns)
    x = g.op("Concat", values, axis=1) if len(values) > 1 else values[0]
    x = g.op("Where", [g.op("IsNaN", [x]), g.const(imputer.statistics_, np.float64), x])
    return scale(g, scaler, x)


def calendar_columns(g: Builder, parts: list[tuple[int, str]], columns: list[str]) -> list[str]:
    """``DateParts.transform`` as graph ops: a [N, 1] double per (column index, part) of ``parts``."""
    every: dict[int, dict[str, str]] = {}
    out = []
    for j, part in parts:
        if j not in every:
            every[j] = calendar_ops(g, clean_number(g, columns[j]))
        out.append(every[j][part])
    return out


def calendar_ops(g: Builder, days: str) -> dict[str, str]:
    """Month, day, weekday and hour of a [N, 1] double column of days, as ``calendar`` computes them."""
    def c(value: float) -> str:
        return g.const(value, np.float64)

    def floor_div(x: str, by: float) -> str:
        return g.op("Floor", [g.op("Div", [x, c(by)])])

    def add(*xs: str) -> str:
        out = xs[0]
        for x in xs[1:]:
            out = g.op("Add", [out, x])
        return out

    def sub(x: str, y: str) -> str:
        return g.op("Sub", [x, y])

    def mul(by: float, x: str) -> str:
        return g.op("Mul", [c(by), x])

    whole = g.op("Floor", [days])
    z = add(whole, c(719468.0))
    doe = sub(z, mul(146097.0, floor_div(z, 146097.0)))
    leap = add(sub(floor_div(doe, 1460.0), floor_div(doe, 36524.0)), floor_div(doe, 146096.0))
    yoe = floor_div(sub(doe, leap), 365.0)
    doy = sub(doe, add(mul(365.0, yoe), sub(floor_div(yoe, 4.0), floor_div(yoe, 100.0))))
    mp = floor_div(add(mul(5.0, doy), c(2.0)), 153.0)
    month = g.op("Where", [g.op("Less", [mp, c(10.0)]), add(mp, c(3.0)), sub(mp, c(9.0))])
    day = add(sub(doy, floor_div(add(mul(153.0, mp), c(2.0)), 5.0)), c(1.0))
    shifted = add(whole, c(3.0))
    weekday = sub(shifted, mul(7.0, floor_div(shifted, 7.0)))
    hour = mul(24.0, sub(days, whole))
    return {"month": month, "day": day, "weekday": weekday, "hour": hour}


def scale(g: Builder, scaler, x: str) -> str:
    kind = type(scaler).__name__
    if kind == "StandardScaler":
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        divisor = scaler.scale_ if scaler.scale_ is not None else 1.0
        return g.op("Div", [g.op("Sub", [x, g.const(mean, np.float64)]), g.const(divisor, np.float64)])
    if kind == "RobustScaler":
        center = scaler.center_ if scaler.center_ is not None else 0.0
        divisor = scaler.scale_ if scaler.scale_ is not None else 1.0
        return g.op("Div", [g.op("Sub", [x, g.const(center, np.float64)]), g.const(divisor, np.float64)])
    if kind == "MinMaxScaler":
        scaled = g.op("Mul", [x, g.const(scaler.scale_, np.float64)])
        return g.op("Add", [scaled, g.const(scaler.min_, np.float64)])
    if kind == "SmoothClipScaler":
        scaled = g.op("Div", [g.op("Sub", [x, g.const(scaler.center_, np.float64)]),
                              g.const(scaler.scale_, np.float64)])
        third = g.op("Div", [scaled, g.const(3.0, np.float64)])
        bound = g.op("Sqrt", [g.op("Add", [g.const(1.0, np.float64), g.op("Mul", [third, third])])])
        return g.op("Div", [scaled, bound])
    if kind == "FunctionTransformer":
        return x
    raise UserError(f"preprocess.scale: the {kind} cannot be exported to ONNX yet; retrain with"
                    " preprocess.scale standard, robust, robust_smooth_clip, minmax or none")


def preprocessing(g: Builder, pre) -> tuple[str, str]:
    """The network's two inputs, ``numeric`` [N, k] float32 and ``codes`` [N, c] int64, from the
    raw column inputs (named as the columns)."""
    from fitwell.serve.onnx_text import text_components

    blocks = []
    if pre.numeric_ is not None:
        for part, transformer, columns in pre.numeric_.transformers_:
            if part == "numeric":
                blocks.append(numbers_block(g, transformer, list(columns)))
            elif part == "dates":
                blocks.append(dates_block(g, transformer, list(columns)))
            elif part.startswith("text"):  # a free-text column's TF-IDF components, scaled
                column = list(columns)[0]
                x = text_components(g, column, column, transformer.named_steps["components"])
                blocks.append(scale(g, transformer.named_steps["scale"], x))
            elif part == "boolean":
                values = [values_of_boolean(g, pre, c) for c in columns]
                x = g.op("Concat", values, axis=1) if len(values) > 1 else values[0]
                missing = g.op("IsNaN", [x])
                blocks.append(g.op("Where", [missing, g.const(transformer.statistics_, np.float64), x]))
            elif part == "onehot":
                encoder = transformer.named_steps["encode"]
                for column, categories in zip(columns, encoder.categories_, strict=True):
                    blocks.append(one_hot(g, pre, column, list(categories)))
    numeric = g.op("Concat", blocks, axis=1) if len(blocks) > 1 else blocks[0]
    numeric = g.op("Cast", [numeric], to=TensorProto.FLOAT, name="numeric")
    codes = []
    if pre.codes_ is not None:
        for column, categories in zip(pre.code_columns_, pre.codes_.categories_, strict=True):
            keys = [c for c in categories if isinstance(c, str)]
            text = text_of(g, pre, column, keys)
            index = lookup(g, text, keys, [list(categories).index(k) + 1 for k in keys], 0)
            codes.append(column2d(g, index, TensorProto.INT64))
    if codes:
        g.op("Concat", codes, axis=1, name="codes")
    else:  # no coded columns: an [N, 0] block
        rows = g.op("Slice", [g.op("Shape", [numeric]), g.const([0], np.int64), g.const([1], np.int64)])
        shape = g.op("Concat", [rows, g.const([0], np.int64)], axis=0)
        zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
        g.op("ConstantOfShape", [shape], name="codes", value=zero)
    return "numeric", "codes"


def values_of_boolean(g: Builder, pre, column: str) -> str:
    text = tidy(g, column, 1)
    return column2d(g, lookup(g, text, list(BOOLEAN_KEYS), list(BOOLEAN_KEYS.values()), float("nan")))


def one_hot(g: Builder, pre, column: str, categories: list) -> str:
    keys = [c for c in categories if isinstance(c, str)]
    text = text_of(g, pre, column, keys)
    if MISSING in keys:  # a missing value is its own category (impute_categorical: constant)
        text = g.op("Where", [g.op("Equal", [text, g.const("", object)]), g.const(MISSING, object), text])
    index = lookup(g, text, keys, [categories.index(k) for k in keys], -1)
    hits = g.op("Equal", [g.op("Unsqueeze", [index, g.const([1], np.int64)]),
                          g.const(np.arange(len(categories))[None, :], np.int64)])
    return g.op("Cast", [hits], to=TensorProto.DOUBLE)


def outputs(g: Builder, run, network_output: str) -> list:
    """Temperature, then probabilities + label, or the value in the target's units."""
    out = network_output
    if getattr(run, "temperature", None):
        out = g.op("Div", [out, g.const(np.float32(run.temperature))])
    if run.task == "regression":
        return value_output(g, run, g.op("Cast", [out], to=TensorProto.DOUBLE))
    probabilities_of(g, out, run.task, np.float32, name="probabilities")
    return label_output(g, run, TensorProto.FLOAT)


def probabilities_of(g: Builder, scores: str, task: str, dtype=np.float64, name: str | None = None) -> str:
    """Class probabilities [N, classes] from raw scores: binary, the sigmoid of the first column as
    [1 - p, p]; multiclass, a softmax (what ``evaluate.metrics.probabilities`` does)."""
    if task == "binary":
        positive = g.op("Sigmoid", [g.op("Gather", [scores, g.const([0], np.int64)], axis=1)])
        return g.op("Concat", [g.op("Sub", [g.const(dtype(1)), positive]), positive], axis=1, name=name)
    return g.op("Softmax", [scores], axis=1, name=name)


def value_output(g: Builder, run, scaled: str) -> list:
    """``prediction`` [N] in the target's units from the scaled value [N, 1] (double)."""
    pre = run.preprocessor
    first = g.op("Gather", [scaled, g.const(0, np.int64)], axis=1)
    g.op("Add", [g.op("Mul", [first, g.const(pre.target_std_, np.float64)]),
                 g.const(pre.target_mean_, np.float64)], name="prediction")
    return [helper.make_tensor_value_info("prediction", TensorProto.DOUBLE, ["N"])]


def label_output(g: Builder, run, dtype: int) -> list:
    """``label`` [N] (the class names as strings) beside the ``probabilities`` already built."""
    index = g.op("ArgMax", ["probabilities"], axis=1, keepdims=0)
    g.op("LabelEncoder", [index], domain="ai.onnx.ml", name="label",
         keys_int64s=list(range(len(run.classes))), values_strings=[str(c) for c in run.classes],
         default_string="")
    return [helper.make_tensor_value_info("probabilities", dtype, ["N", len(run.classes)]),
            helper.make_tensor_value_info("label", TensorProto.STRING, ["N"])]


def network(module, num_numeric: int, num_codes: int, family: str):
    """A fitwell network as an ONNX model (torch.onnx, dynamo exporter, batch dimension free):
    inputs ``numeric`` [N, k] float32 and ``codes`` [N, c] int64, output its raw scores."""
    numeric = torch.zeros(2, num_numeric)
    codes = torch.ones(2, num_codes, dtype=torch.long)
    batch = torch.export.Dim("batch")
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module.eval(), (numeric, codes), input_names=["numeric", "codes"],
                                        output_names=["output"], dynamic_shapes=({0: batch}, {0: batch}),
                                        opset_version=OPSET, dynamo=True, verbose=False)
    except Exception as err:  # torch.export's many failure types
        raise UserError(f"model.name {family!r}: the network cannot be exported to ONNX"
                        f" ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    finally:
        quiet.setLevel(level)
    return program.model_proto


def input_infos(pre) -> list:
    types = {column: TensorProto.DOUBLE if kind == "numeric" else TensorProto.STRING
             for column, kind in pre.plan.kinds.items()}
    return [helper.make_tensor_value_info(column, kind, ["N", 1]) for column, kind in types.items()]
