"""``fitwell export RUN --format onnx``: the whole pipeline as one ONNX graph -- raw columns in
(numbers as doubles with NaN for missing, categories and yes/no columns as strings with "" for
missing), probabilities and labels (or values) out.

The network is exported with ``torch.onnx.export(dynamo=True)``; the fitted preprocessing is
re-expressed as graph ops from the fitted scikit-learn objects' parameters (no converter knows
fitwell's clipper, and this keeps one opset): strings are trimmed and lower-cased (ONNX
``StringNormalizer`` in the C locale, then ``StringSplit``/``StringConcat`` rejoin the words),
infinities and values beyond float32 become missing, clipping, imputation (with missing-value
indicators), scaling, one-hot and ordinal codes (unseen categories to the unknown bucket), then
the temperature, the sigmoid/softmax or the target's scale. ``check`` compares it with
``fitwell predict`` in onnxruntime.

Not exported (a clear error names it): ensembles, image/text/sequence inputs, the quantile scaler.
Two string edge cases differ from fitwell: letters beyond ASCII are not lower-cased (the C locale),
and runs of inner spaces collapse to one.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from onnx import TensorProto, helper, numpy_helper

from fitwell.data.clean import FLOAT32_MAX
from fitwell.data.columns import BOOL_WORDS
from fitwell.data.preprocess import MISSING
from fitwell.errors import UserError
from fitwell.serve.bundle import load_run

OPSET, ML_OPSET, IR_VERSION = 20, 3, 10
BOOLEAN_KEYS = {**BOOL_WORDS, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}


class Builder:
    """Nodes and constants of the graph around the network; every name starts with ``fw_``."""

    def __init__(self):
        self.nodes, self.constants, self.count = [], [], 0

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


def tidy(g: Builder, column: str, words: int) -> str:
    """A string column [N, 1] trimmed and lower-cased, as a 1-D [N] tensor; a value with more words
    than any training category becomes a value no category has."""
    flat = g.op("Reshape", [column, g.const([-1], np.int64)])
    lower = g.op("StringNormalizer", [flat], case_change_action="LOWER", locale="C")
    parts, count = g.op("StringSplit", [lower], outputs=2)
    rows = g.op("Slice", [g.op("Shape", [parts]), g.const([0], np.int64), g.const([1], np.int64)])
    width = g.op("Concat", [rows, g.const([words], np.int64)], axis=0)
    pad = g.op("Expand", [g.const([[""]], object), width])
    padded = g.op("Concat", [parts, pad], axis=1)
    text = g.op("Gather", [padded, g.const(0, np.int64)], axis=1)
    for k in range(1, words):
        joined = g.op("StringConcat", [g.op("StringConcat", [text, g.const(" ", object)]),
                                       g.op("Gather", [padded, g.const(k, np.int64)], axis=1)])
        text = g.op("Where", [g.op("Greater", [count, g.const(k, np.int64)]), joined, text])
    too_long = g.op("Greater", [count, g.const(words, np.int64)])
    return g.op("Where", [too_long, g.const("\x00unknown", object), text])


def text_of(g: Builder, pre, column: str, keys: list) -> str:
    """The column's strings as fitwell's preprocessing sees them ([N], "" = missing)."""
    if not pre.normalize_strings:
        return g.op("Reshape", [column, g.const([-1], np.int64)])
    words = max([len(str(k).split()) for k in keys] + [1])
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


def numbers_block(g: Builder, pipeline, columns: list[str]) -> str:
    """Clip, impute (with indicators), scale: the ``numeric`` part of the ColumnTransformer."""
    cleaned = []
    for column in columns:
        bad = g.op("Or", [g.op("IsInf", [column]), g.op("Greater", [g.op("Abs", [column]),
                                                                     g.const(FLOAT32_MAX, np.float64)])])
        cleaned.append(g.op("Where", [bad, g.const(np.nan, np.float64), column]))
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
    if kind == "FunctionTransformer":
        return x
    raise UserError(f"preprocess.scale: the {kind} cannot be exported to ONNX yet; retrain with"
                    " preprocess.scale standard, robust, minmax or none")


def preprocessing(g: Builder, pre) -> tuple[str, str]:
    """The network's two inputs, ``numeric`` [N, k] float32 and ``codes`` [N, c] int64, from the
    raw column inputs (named as the columns)."""
    blocks = []
    if pre.numeric_ is not None:
        for part, transformer, columns in pre.numeric_.transformers_:
            if part == "numeric":
                blocks.append(numbers_block(g, transformer, list(columns)))
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
    pre = run.preprocessor
    if run.task == "regression":
        first = g.op("Gather", [g.op("Cast", [out], to=TensorProto.DOUBLE), g.const(0, np.int64)], axis=1)
        g.op("Add", [g.op("Mul", [first, g.const(pre.target_std_, np.float64)]),
                     g.const(pre.target_mean_, np.float64)], name="prediction")
        return [helper.make_tensor_value_info("prediction", TensorProto.DOUBLE, ["N"])]
    if run.task == "binary":
        positive = g.op("Sigmoid", [g.op("Gather", [out, g.const([0], np.int64)], axis=1)])
        negative = g.op("Sub", [g.const(np.float32(1)), positive])
        g.op("Concat", [negative, positive], axis=1, name="probabilities")
    else:
        g.op("Softmax", [out], axis=1, name="probabilities")
    index = g.op("ArgMax", ["probabilities"], axis=1, keepdims=0)
    g.op("LabelEncoder", [index], domain="ai.onnx.ml", name="label",
         keys_int64s=list(range(len(run.classes))), values_strings=[str(c) for c in run.classes],
         default_string="")
    classes = len(run.classes)
    return [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("label", TensorProto.STRING, ["N"])]


def network(run):
    """The run's network as an ONNX model (torch.onnx, dynamo exporter, batch dimension free)."""
    pre = run.preprocessor
    numeric = torch.zeros(2, pre.num_numeric)
    codes = torch.ones(2, len(pre.code_columns_), dtype=torch.long)
    batch = torch.export.Dim("batch")
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(run.model.eval(), (numeric, codes), input_names=["numeric", "codes"],
                                        output_names=["output"], dynamic_shapes=({0: batch}, {0: batch}),
                                        opset_version=OPSET, dynamo=True, verbose=False)
    except Exception as err:  # torch.export's many failure types
        raise UserError(f"model.name {run.config.model.name!r}: the network cannot be exported to ONNX"
                        f" ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    finally:
        quiet.setLevel(level)
    return program.model_proto


def input_infos(pre) -> list:
    types = {column: TensorProto.DOUBLE if kind == "numeric" else TensorProto.STRING
             for column, kind in pre.plan.kinds.items()}
    return [helper.make_tensor_value_info(column, kind, ["N", 1]) for column, kind in types.items()]


def export_onnx(run_path, out: Path | None = None) -> Path:
    """Write ``RUN/model.onnx`` (or ``out``): raw columns in, predictions out."""
    import onnx

    from fitwell.files import write_with

    run = load_run(run_path)
    if hasattr(run, "ensemble"):
        raise UserError(f"{run.path} is an ensemble run; ONNX export covers single-model runs so far"
                        " (fitwell serve serves ensembles)")
    pre = run.preprocessor
    if pre.inputs:
        kinds = ", ".join(block.key for block in pre.inputs)
        raise UserError(f"{run.path} reads {kinds} inputs; ONNX export covers tables so far")
    net = network(run)
    g = Builder()
    preprocessing(g, pre)
    split = len(g.nodes)
    results = outputs(g, run, "output")
    graph = helper.make_graph([*g.nodes[:split], *net.graph.node, *g.nodes[split:]], "fitwell",
                              input_infos(pre), results, [*g.constants, *net.graph.initializer])
    imports = {op.domain: op.version for op in net.opset_import}
    imports.update({"": OPSET, "ai.onnx.ml": ML_OPSET})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()],
                              functions=list(net.functions), ir_version=IR_VERSION, producer_name="fitwell")
    onnx.checker.check_model(model)
    loads_in_onnxruntime(model.SerializeToString(), run.config.model.name)
    path = Path(out) if out is not None else run.path / "model.onnx"
    write_with(path, lambda tmp: Path(tmp).write_bytes(model.SerializeToString()))
    if path.parent == run.path:  # the run's own copy joins its manifest: serve --runtime onnx checks it
        record_in_manifest(run, path)
    return path


def record_in_manifest(run, path: Path) -> None:
    from fitwell.files import sha256, write_json

    manifest = run.dir.read_json(run.dir.manifest) if run.dir.manifest.exists() else None
    if manifest is not None:
        manifest.setdefault("sha256", {})[path.relative_to(run.path).as_posix()] = sha256(path)
        write_json(run.dir.manifest, manifest)


class OnnxPredictor:
    """``run.predict`` through the run's ``model.onnx`` in onnxruntime (``fitwell serve --runtime
    onnx``): the same table -- ``prediction`` and ``proba_<class>`` -- from the exported graph."""

    def __init__(self, run, path: Path | None = None):
        import onnxruntime

        path = Path(path) if path is not None else run.path / "model.onnx"
        if not path.exists():
            raise UserError(f"{path} does not exist; write it first: fitwell export {run.path}")
        if path.parent == run.path:
            run.dir.verify(path)
        self.run, self.path = run, path
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        answers = self.session.run(None, onnx_feeds(self.run.preprocessor, frame))
        got = dict(zip(self.names, answers, strict=True))
        if self.run.task == "regression":
            return pd.DataFrame({"prediction": got["prediction"]}, index=frame.index)
        probabilities = got["probabilities"]
        by_text = {str(label): label for label in self.run.classes}  # the graph's labels are strings
        table = pd.DataFrame({"prediction": [by_text.get(t, t) for t in got["label"]]}, index=frame.index)
        for i, label in enumerate(self.run.classes):
            table[f"proba_{label}"] = probabilities[:, i]
        return table


def loads_in_onnxruntime(model: bytes, family: str) -> None:
    """A graph torch exports but onnxruntime cannot load is refused here, not at serving time."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph types
        raise UserError(f"model.name {family!r}: the exported graph does not load in onnxruntime"
                        f" ({str(err).splitlines()[0][:240]}); this family cannot be exported to ONNX"
                        " yet") from err


def onnx_feeds(pre, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A frame of raw rows as the graph's inputs: numbers as doubles (NaN missing), the rest as
    strings ("" missing)."""
    from fitwell.data.columns import to_numbers

    feeds = {}
    for column, kind in pre.plan.kinds.items():
        if column not in frame:
            raise UserError(f"input column {column!r} missing from the data")
        series = frame[column]
        if kind == "numeric":
            feeds[column] = to_numbers(series).to_numpy(dtype=np.float64).reshape(-1, 1)
        else:
            text = [("" if v is None or (isinstance(v, float) and v != v) else str(v)) for v in series]
            feeds[column] = np.asarray(text, dtype=object).reshape(-1, 1)
    return feeds


def check_export(run_path, model_path: Path, data) -> dict[str, float]:
    """onnxruntime against ``fitwell predict`` on ``data``: the largest difference in probabilities
    (or in regression values, relative to max(1, |value|)) and the share of equal labels."""
    from fitwell.track.bundle import read_frame

    run = load_run(run_path)
    frame = read_frame(data)
    got, expected = OnnxPredictor(run, model_path).predict(frame), run.predict(frame)
    if run.task == "regression":
        values = expected["prediction"].to_numpy(dtype=float)
        difference = np.abs(got["prediction"].to_numpy() - values) / np.maximum(1.0, np.abs(values))
        return {"rows": len(frame), "max_difference": float(difference.max()), "measure": "relative value"}
    columns = [f"proba_{c}" for c in run.classes]
    difference = np.abs(got[columns].to_numpy() - expected[columns].to_numpy())
    same = got["prediction"].astype(str) == expected["prediction"].astype(str)
    return {"rows": len(frame), "max_difference": float(difference.max()), "measure": "probability",
            "labels_equal": float(np.mean(same))}
