"""`fitwell export --format onnx`: one graph from raw columns to predictions, equal to `fitwell predict`."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pandas as pd
import pytest

from fitwell.cli import run_cli
from fitwell.errors import UserError
from fitwell.serve.bundle import load_run
from fitwell.serve.export import onnx_feeds
from tests.conftest import make_mixed_frame
from tests.test_cli import only_run


def train(tmp_path, frame: pd.DataFrame, target: str, *overrides: str):
    frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "run.yaml").write_text(
        f"data: {{source: {tmp_path / 'train.csv'}, target: {target}}}\n"
        "train: {epochs: 3, progress: false}\n"
        "preprocess: {onehot_max_categories: 5}\n"  # city (25 values) becomes an embedded code column
        f"track: {{runs_dir: {tmp_path / 'runs'}, report: false}}\n")
    assert run_cli(["train", str(tmp_path / "run.yaml"), *overrides]) == 0
    return only_run(tmp_path / "runs")


def messy(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """New rows as users send them: unseen categories, missing values, infinities, stray spaces/case."""
    new = frame.drop(columns=[target]).head(120).copy()
    new.loc[new.index[:4], "color"] = "ultraviolet"
    new.loc[new.index[4:8], "city"] = "atlantis"
    new.loc[new.index[8:12], "x1"] = np.nan
    new.loc[new.index[12:14], "x2"] = np.inf
    new.loc[new.index[14:18], "color"] = None
    new.loc[new.index[18:22], "city"] = "  CITY3 "
    new.loc[new.index[22:24], "flag"] = " YES"
    return new


@pytest.mark.slow
@pytest.mark.parametrize("task, overrides", [
    ("binary", []),
    ("multiclass", ["calibration.method=temperature"]),
    ("regression", []),
    ("binary", ["model.name=tabular_transformer"]),
    ("binary", ["model.name=resmlp", "preprocess.scale=robust", "preprocess.outliers=quantile"]),
    ("regression", ["preprocess.scale=robust_smooth_clip"]),
    ("regression", ["model.embeddings=piecewise_linear"]),
    ("multiclass", ["model.name=tabm", "model.ensemble_size=4", "model.width=32"]),
])
def test_the_onnx_graph_predicts_what_fitwell_predict_does(tmp_path, capsys, task, overrides):
    frame = make_mixed_frame(0, 400)
    target = "label"
    if task == "multiclass":
        frame[target] = pd.cut(frame["x1"].fillna(0) - frame["x2"], [-np.inf, -1, 1, np.inf],
                               labels=["low", "mid", "high"]).astype(str)
    elif task == "regression":
        frame[target] = 3 * frame["x1"].fillna(0) - frame["x2"] + 100
    run = train(tmp_path, frame, target, *overrides)
    new = messy(frame, target)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert run_cli(["export", str(run), "--check", str(tmp_path / "new.csv")]) == 0
    assert "max |difference|" in capsys.readouterr().out

    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    loaded = load_run(run)
    with pytest.warns(UserWarning, match="infinite"):
        expected = loaded.predict(new)
    answers = session.run(None, onnx_feeds(loaded.preprocessor, new))
    got = dict(zip([o.name for o in session.get_outputs()], answers, strict=True))
    if task == "regression":  # values near 100: float32's resolution there is ~1e-5
        assert np.abs(got["prediction"] - expected["prediction"].to_numpy()).max() <= 1e-5 * 100
    else:
        probabilities = expected[[f"proba_{c}" for c in loaded.classes]].to_numpy()
        assert np.abs(got["probabilities"] - probabilities).max() <= 1e-5
        assert (got["label"] == expected["prediction"].astype(str).to_numpy()).all()


def test_what_cannot_be_exported_says_so(tmp_path, capsys):
    run = train(tmp_path, make_mixed_frame(0, 200), "label", "preprocess.scale=quantile", "train.epochs=1")
    assert run_cli(["export", str(run)]) == 2
    assert "preprocess.scale: the QuantileTransformer cannot be exported" in capsys.readouterr().err
    assert not (run / "model.onnx").exists()
    assert run_cli(["export", str(run), "--format", "pmml"]) == 2


def test_a_changed_byte_is_refused_by_export(tmp_path, capsys):
    run = train(tmp_path, make_mixed_frame(0, 200), "label", "train.epochs=1")
    spec = run / "model.json"
    spec.write_text(spec.read_text().replace('"dropout": 0.1', '"dropout": 0.2'))
    assert run_cli(["export", str(run)]) == 2
    assert "model.json" in capsys.readouterr().err


def test_serve_can_run_the_exported_graph(tmp_path, capsys):
    """`fitwell serve --runtime onnx` predicts through model.onnx in onnxruntime: the same table as
    the torch runtime; the graph is in the run's manifest, so a changed byte is refused."""
    from fitwell.errors import DamagedRun
    from fitwell.serve.export import OnnxPredictor

    frame = make_mixed_frame(0, 300)
    run = train(tmp_path, frame, "label", "train.epochs=2")
    loaded = load_run(run)
    with pytest.raises(UserError, match="fitwell export"):
        OnnxPredictor(loaded)
    assert run_cli(["export", str(run)]) == 0
    new = messy(frame, "label").drop(columns=["x2"]).assign(x2=0.5)
    onnx_table, torch_table = OnnxPredictor(load_run(run)).predict(new), loaded.predict(new)
    assert (onnx_table["prediction"] == torch_table["prediction"]).all()
    assert np.abs(onnx_table["proba_1"] - torch_table["proba_1"]).max() <= 1e-5
    empty = OnnxPredictor(load_run(run)).predict(new.head(0))  # onnxruntime refuses empty string batches
    assert len(empty) == 0 and list(empty.columns) == list(torch_table.columns)
    graph = bytearray((run / "model.onnx").read_bytes())
    graph[len(graph) // 2] ^= 1
    (run / "model.onnx").write_bytes(bytes(graph))
    with pytest.raises(DamagedRun, match="model.onnx"):
        OnnxPredictor(load_run(run))


def test_the_graph_tidies_strings_as_fitwell_does():
    """Trimmed, lower-cased, inner runs of spaces kept (a real table's job titles hold both
    "team  leader" and "team leader"), blank is missing; a value longer than every category is none."""
    from onnx import TensorProto, helper

    from fitwell.data.clean import tidy_text
    from fitwell.serve.onnx_graph import Builder, tidy

    values = ["  Team  Leader ", "team leader", "TEAM", "", "   ", "a b c", "a  b", " x ",
              "one two three four"]
    g = Builder()
    g.op("Identity", [tidy(g, "text", 3)], name="tidied")
    model = g.model([helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])],
                    [helper.make_tensor_value_info("tidied", TensorProto.STRING, ["N"])])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"text": np.asarray(values, dtype=object).reshape(-1, 1)})
    expected = tidy_text(pd.Series(values)).fillna("").tolist()
    assert list(got[:-1]) == expected[:-1]  # 'team  leader', 'team leader', 'team', '', '', ..., 'x'
    assert got[-1] == "\x00unknown"  # four parts: more than any category has
