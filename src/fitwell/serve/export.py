"""``fitwell export RUN --format onnx``: the whole pipeline as one ONNX graph -- raw columns in
(numbers as doubles with NaN for missing, categories and yes/no columns as strings with "" for
missing), probabilities and labels (or values) out.

A single-model run is its preprocessing (onnx_graph.py) and its network (``torch.onnx.export``,
dynamo), an ensemble run its members' views, graphs and combiner (onnx_ensemble.py); the parts are
joined by ``Builder.merge``. ``check`` compares the graph with ``fitwell predict`` in onnxruntime,
and ``OnnxPredictor`` serves it (``fitwell serve --runtime onnx``).

Not exported (a clear error names it): image/text/sequence inputs, the quantile scaler, members
that do not convert (onnx_ensemble.py). Two string edge cases differ from fitwell: letters beyond
ASCII are not lower-cased (the C locale), and runs of inner spaces collapse to one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.errors import UserError
from fitwell.serve.bundle import load_run
from fitwell.serve.onnx_ensemble import ensemble_graph
from fitwell.serve.onnx_graph import Builder, input_infos, network, outputs, preprocessing


def export_onnx(run_path, out: Path | None = None) -> Path:
    """Write ``RUN/model.onnx`` (or ``out``): raw columns in, predictions out."""
    from fitwell.files import write_with

    run = load_run(run_path)
    task = getattr(run, "task", None)
    if task in ("reinforcement", "clustering", "anomaly", "embedding"):
        kept = "policy.zip (Stable-Baselines3's format)" if task == "reinforcement" else \
            "unsupervised.skops and model.safetensors"
        raise UserError(f"{run.path} is a {task} run: fitwell export writes a supervised model's ONNX graph;"
                        f" this run's model is in {kept}, and fitwell predict serves it")
    pre = run.preprocessor
    if pre.inputs:
        kinds = ", ".join(block.key for block in pre.inputs)
        raise UserError(f"{run.path} reads {kinds} inputs; ONNX export covers tables so far")
    g = Builder()
    if hasattr(run, "ensemble"):
        results = ensemble_graph(g, run)
        family = "ensemble"
    else:
        family = run.config.model.name
        (raw,) = g.merge(network(run.model, pre.num_numeric, len(pre.code_columns_), family),
                         list(preprocessing(g, pre)))
        results = outputs(g, run, raw)
    model = g.model(input_infos(pre), results)
    loads_in_onnxruntime(model.SerializeToString(), family)
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
        if len(frame) == 0:  # onnxruntime's string ops refuse an empty batch
            columns = ["prediction"] + [f"proba_{c}" for c in (self.run.classes or [])]
            return pd.DataFrame(columns=columns, index=frame.index)
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
    """A frame of raw rows as the graph's inputs: numbers as doubles (NaN missing), dates as days
    since 1970-01-01 (doubles; the graph does not parse text), the rest as strings ("" missing)."""
    from fitwell.data.columns import to_days, to_numbers

    feeds = {}
    for column, kind in pre.plan.kinds.items():
        if column not in frame:
            raise UserError(f"input column {column!r} missing from the data")
        series = frame[column]
        if column in pre.plan.dates:
            feeds[column] = to_days(series).to_numpy(dtype=np.float64).reshape(-1, 1)
        elif kind == "numeric":
            feeds[column] = to_numbers(series).to_numpy(dtype=np.float64).reshape(-1, 1)
        else:
            text = [("" if v is None or (isinstance(v, float) and v != v) else str(v)) for v in series]
            feeds[column] = np.asarray(text, dtype=object).reshape(-1, 1)
    return feeds


def check_export(run_path, model_path: Path, data) -> dict[str, float]:
    """onnxruntime against ``fitwell predict`` on ``data``: the largest difference in probabilities
    (or in regression values, relative to max(1, |value|, the target's standard deviation): a
    float32 network predicts the standardised target, so its last bit is a share of that scale --
    5e-5 on a balance of 5 whose spread is 460) and the share of equal labels."""
    from fitwell.track.bundle import read_frame

    run = load_run(run_path)
    frame = read_frame(data)
    got, expected = OnnxPredictor(run, model_path).predict(frame), run.predict(frame)
    if run.task == "regression":
        values = expected["prediction"].to_numpy(dtype=float)
        scale = max(1.0, float(getattr(run.preprocessor, "target_std_", 1.0)))
        difference = np.abs(got["prediction"].to_numpy() - values) / np.maximum(scale, np.abs(values))
        return {"rows": len(frame), "max_difference": float(difference.max()), "measure": "relative value"}
    columns = [f"proba_{c}" for c in run.classes]
    difference = np.abs(got[columns].to_numpy() - expected[columns].to_numpy())
    same = got["prediction"].astype(str) == expected["prediction"].astype(str)
    return {"rows": len(frame), "max_difference": float(difference.max()), "measure": "probability",
            "labels_equal": float(np.mean(same))}
