"""The edges a new user meets: damaged run directories, odd numbers, divergence, odd overrides,
odd tables, failed validation, killed runs, and bad output paths. Each ends in one clear message
(exit 2) or a correct result with a warning -- never a library's traceback."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fitwell
from fitwell.cli import run_cli
from fitwell.config import load_config
from fitwell.errors import ConfigError, DataError, TrainingFailed, UserError


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished run and the table it was trained on."""
    folder = tmp_path_factory.mktemp("finished")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=200), "x2": rng.normal(size=200),
                          "color": rng.choice(["red", "blue"], size=200)})
    frame["label"] = (frame["x1"] + (frame["color"] == "red") > 0.5).astype(int)
    data = folder / "data.csv"
    frame.to_csv(data, index=False)
    run = fitwell.train({"data": {"source": str(data), "target": "label"},
                         "track": {"report": False, "runs_dir": str(folder / "runs"), "name": "r"},
                         "train": {"epochs": 3, "progress": False}})
    return run.path, data


@pytest.fixture
def damaged(finished, tmp_path):
    """A fresh copy of the finished run to damage."""
    source, data = finished
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    return copy, data


def predict_error(run: Path, data: Path, capsys) -> str:
    code = run_cli(["predict", str(run), "--data", str(data)])
    err = one_line(capsys.readouterr().err)
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error:")
    return err


@pytest.mark.parametrize("name, damage, message", [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:40]), r"model\.safetensors"),
    ("preprocess/preprocess.skops", lambda p: p.write_bytes(p.read_bytes()[:100]), r"preprocess\.skops"),
    ("model.json", lambda p: p.write_text("{not json"), r"model\.json"),
    ("preprocess/preprocess.json", lambda p: p.write_text("[1, 2"), r"preprocess\.json"),
    ("preprocess/preprocess.skops", lambda p: p.unlink(), r"preprocess\.skops is missing"),
    ("model.safetensors", lambda p: p.unlink(), r"model\.safetensors is missing"),
])
def test_a_damaged_run_names_the_file(damaged, capsys, name, damage, message):
    run, data = damaged
    damage(run / name)
    err = predict_error(run, data, capsys)
    assert re.search(message, err), err
    assert "fitwell train" in err  # the advice is a command that works for this directory


@pytest.mark.parametrize("check_manifest", [True, False])
def test_a_model_json_that_does_not_fit_the_weights(damaged, capsys, check_manifest):
    run, data = damaged
    spec = json.loads((run / "model.json").read_text())
    spec["kwargs"]["hidden_sizes"] = [7]
    (run / "model.json").write_text(json.dumps(spec))
    if not check_manifest:  # a run from before manifests: the load itself must say it
        (run / "manifest.json").unlink()
    err = predict_error(run, data, capsys)
    assert "model.json" in err or "model.safetensors" in err
    assert ("manifest.json" in err) is check_manifest


def test_the_manifest_hashes_every_artifact(finished):
    run, _ = finished
    manifest = json.loads((run / "manifest.json").read_text())["sha256"]
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.json",
                 "preprocess/preprocess.skops", "preprocess/preprocess.json", "data.json"):
        assert name in manifest, name
    assert not any(k.startswith("checkpoints/") for k in manifest)
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_evaluate_and_resume_on_a_damaged_run(damaged, capsys):
    run, data = damaged
    (run / "config.yaml").write_text("data: [unclosed")
    assert run_cli(["evaluate", str(run), "--data", str(data)]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert run_cli(["train", "--resume", str(run)]) == 2  # finished: nothing to resume
    assert "already finished" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e308, -1e300])
def test_infinite_and_huge_numbers_become_missing_with_a_note(tmp_path, value):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "z": rng.normal(size=120)})
    frame["y"] = (frame["x"] > 0).astype(int)
    frame.loc[[4, 9], "x"] = value
    notes = []

    class Console:
        def print(self, text, **kwargs):
            notes.append(str(text))

    run = fitwell.train({"data": {"target": "y"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"epochs": 3, "progress": False}}, data=frame, console=Console())
    assert np.isfinite(run.metrics["roc_auc"])
    said = one_line(" ".join(notes))
    assert re.search(r"column 'x': 2 values .* treated as missing", said), said


def test_divergence_on_a_regression_stops_cleanly_and_is_listed_failed(tmp_path):
    from fitwell.track.runs import list_runs

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["y"] = 3 * frame["x"] + rng.normal(size=200)
    with pytest.raises(TrainingFailed, match=r"non-finite loss|not finite"):
        fitwell.train({"data": {"target": "y"}, "track": {"runs_dir": str(tmp_path), "name": "d"},
                       "train": {"lr": 1e6, "epochs": 5, "progress": False, "optimizer": "adamw"}},
                      data=frame)
    (row,) = list_runs(tmp_path)
    assert row["status"] == "failed" and row["reason"]


def test_validation_outputs_that_blow_up_stop_the_run():
    """The training loss can still be a number while validation outputs are not (weights at 1e38):
    the guard stops there instead of handing NaN to scikit-learn's metrics."""
    import torch

    from fitwell.engine import NanGuard, TensorData, Trainer
    from fitwell.engine.losses import build_loss

    class Explodes(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, numeric, codes):
            scale = 1.0 if self.training else float("inf")
            return (numeric[:, :1] * self.w * scale).reshape(-1)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1)).astype(np.float32)
    data = TensorData.from_numpy(x, np.zeros((64, 0), np.int64), x[:, 0].copy())
    model = Explodes()
    trainer = Trainer(model, build_loss("mse", "regression"), torch.optim.SGD(model.parameters(), lr=0.01),
                      task="regression", epochs=3, batch_size=16, callbacks=[NanGuard()])
    state = trainer.fit(data, data)
    assert state.diverged and "validation outputs are not finite" in state.stop_reason
    assert state.epoch == 1 and np.isnan(state.history[0]["val_loss"])


def test_a_binary_model_worse_than_the_constant_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = (frame["x"] + rng.normal(size=300) > 0).astype(int)
    config = {"data": {"target": "y"}, "track": {"report": False, "runs_dir": str(tmp_path)},
              "explain": {"permutation": False},
              "train": {"epochs": 4, "progress": False, "early_stopping": {"enabled": False}}}
    # lr 10 with AdamW: every loss stays a number, the log loss ends near 10 (the constant: 0.69)
    bad = fitwell.train(config, {"train.lr": 10.0, "track.name": "bad"}, data=frame)
    good = fitwell.train(config, {"track.name": "good"}, data=frame)
    checks = {run: [f["check"] for f in json.loads((run.path / "doctor.json").read_text())["findings"]]
              for run in (bad, good)}
    assert bad.metrics["log_loss"] > 0.7 and "worse_than_baseline" in checks[bad]
    assert good.metrics["log_loss"] < 0.69 and "worse_than_baseline" not in checks[good]


@pytest.mark.parametrize("override", ["model.hidden_sizes.0.x=1", "none=1", "int=1", "train.lr.x=1",
                                      "model.hidden_sizes.9=1", "=1", "train..lr=1", "str=x"])
def test_odd_overrides_are_config_errors(override):
    with pytest.raises(ConfigError):
        load_config({}, [override])


@pytest.mark.parametrize("value", [np.float64(0.5), np.int64(3), np.array([1.0])[0]])
def test_numpy_scalars_load_and_save(value, tmp_path):
    from fitwell.config import dump_config

    config = load_config({"ensemble": {"members": [{"name": "a", "kind": "lightgbm",
                                                    "params": {"learning_rate": value}}]}})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize("value", [b"bytes", "lone \ud800 surrogate", object()])
def test_values_that_cannot_be_saved_are_config_errors(value):
    with pytest.raises(ConfigError, match=r"ensemble\.members\.0\.params\.x"):
        load_config({"ensemble": {"members": [{"name": "a", "kind": "lightgbm", "params": {"x": value}}]}})


def test_duplicate_column_names_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a,y\n1,2,3,0\n4,5,6,1\n" * 20)
    with pytest.raises(DataError, match=r"column 'a' appears 2 times"):
        fitwell.train({"data": {"source": str(path), "target": "y"}, "track": {"runs_dir": str(tmp_path)}})
    frame = pd.DataFrame([[1, 2, 0]] * 20, columns=["a", "a", "y"])
    with pytest.raises(DataError, match=r"column 'a' appears 2 times"):
        fitwell.train({"data": {"target": "y"}, "track": {"runs_dir": str(tmp_path)}}, data=frame)
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_text_in_a_numeric_column_at_predict_time_warns(finished):
    run_path, data = finished
    run = fitwell.load_run(run_path)
    frame = pd.read_csv(data).drop(columns=["label"]).head(10)
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[frame.index[:3], "x1"] = "twelve"
    with pytest.warns(UserWarning, match=r"column 'x1': 3 of 10 values are not numbers"):
        predictions = run.predict(frame)
    assert len(predictions) == 10


@pytest.mark.parametrize("sections, key", [
    ({"model": {"name": "nope"}}, "model.name"),
    ({"train": {"callbacks": [{"name": "no_such_callback"}]}}, "callback"),
    ({"train": {"loss": "mse"}}, "train.loss"),
    ({"train": {"class_weights": {"7": 2.0}}}, "train.class_weights"),
    ({"train": {"accelerator": "cuda"}}, "train.accelerator"),
])
def test_failed_validation_leaves_no_run_directory(tmp_path, mixed_frame, sections, key):
    import torch

    if key == "train.accelerator" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    config = {"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path / "runs")},
              "train": {"epochs": 2, "progress": False, **sections.get("train", {})}}
    config.update({k: v for k, v in sections.items() if k != "train"})
    with pytest.raises(UserError, match=re.escape(key)):
        fitwell.train(config, data=mixed_frame)
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_a_run_killed_before_its_first_checkpoint(finished, tmp_path, capsys):
    from fitwell.track.runs import list_runs

    source, _ = finished
    run = tmp_path / "runs" / "killed"
    run.mkdir(parents=True)
    shutil.copy(source / "config.yaml", run / "config.yaml")
    (run / "status.json").write_text(json.dumps({"status": "running", "pid": 999999999, "host": "elsewhere"}))
    (row,) = list_runs(tmp_path / "runs")
    assert row["status"] == "interrupted" and not row["resumable"]
    assert run_cli(["train", "--resume", str(run)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "nothing to resume" in err and f"fitwell train {run / 'config.yaml'}" in err


def test_predict_out_under_an_existing_file(finished, tmp_path, capsys):
    run, data = finished
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_cli(["predict", str(run), "--data", str(data), "--out", str(blocker / "p.csv")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "--out" in err and "Traceback" not in err


def test_an_interrupted_run_is_listed_resumable_and_refuses_damaged_preprocessing(tmp_path, mixed_frame,
                                                                                capsys):
    from fitwell.engine import Callback
    from fitwell.track.runs import list_runs

    class Stop(Callback):
        def on_epoch_end(self, trainer, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    csv = tmp_path / "d.csv"
    mixed_frame.to_csv(csv, index=False)
    config = {"data": {"source": str(csv), "target": "label"},
              "track": {"report": False, "runs_dir": str(tmp_path / "runs"), "name": "r"},
              "train": {"epochs": 5, "progress": False}}
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, callbacks=[Stop()])
    (row,) = list_runs(tmp_path / "runs")
    assert row["status"] == "interrupted" and row["resumable"]
    assert f"fitwell train --resume {tmp_path / 'runs' / 'r'}" in row["reason"]
    skops = tmp_path / "runs" / "r" / "preprocess" / "preprocess.skops"
    skops.write_bytes(skops.read_bytes()[:64])
    assert run_cli(["train", "--resume", str(tmp_path / "runs" / "r")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "preprocess.skops cannot be read" in err and "Traceback" not in err


def test_a_run_from_before_manifests_still_loads(finished, tmp_path):
    from fitwell.track.runs import list_runs

    source, data = finished
    old = tmp_path / "runs" / "old"
    shutil.copytree(source, old)
    (old / "manifest.json").unlink()
    (old / "status.json").unlink()
    assert len(fitwell.load_run(old).predict(pd.read_csv(data).head(5))) == 5
    (row,) = list_runs(tmp_path / "runs")
    assert row["status"] == "completed"


@pytest.mark.parametrize("command", ["cv", "tune"])
def test_a_refused_cv_or_tune_config_leaves_no_folder(tmp_path, mixed_frame, command):
    csv = tmp_path / "d.csv"
    mixed_frame.to_csv(csv, index=False)
    runs = tmp_path / "runs"
    config = {"data": {"source": str(csv), "target": "label"}, "track": {"runs_dir": str(runs)},
              "train": {"epochs": 2, "progress": False, "class_weights": {"no such class": 2.0}},
              "tune": {"space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}, "trials": 2}}
    if command == "cv":
        from fitwell.cv.cross_validation import cross_validate

        call = lambda: cross_validate(config, folds=2)  # noqa: E731
    else:
        from fitwell.tune import tune

        call = lambda: tune(config)  # noqa: E731
    with pytest.raises(UserError, match=r"train\.class_weights"):
        call()
    assert not runs.exists() or not any(runs.iterdir())
