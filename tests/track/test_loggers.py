"""Each tracker's output read back with its own tools: the CSV file, TensorBoard's event reader,
MLflow's client over the SQLite store (and its pyfunc model), the W&B offline run file."""

import csv
import json
import struct
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from fitwell.pipeline import train


def quick(tmp_path, loggers, **track):
    sections = {"data": {"source": "sklearn:breast_cancer"},
                "train": {"epochs": 4, "progress": False, "early_stopping": {"enabled": False}},
                "track": {"runs_dir": str(tmp_path / "runs"), "loggers": loggers, **track}}
    return train(sections)


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run.path / "history.jsonl").read_text().splitlines()]


def test_csv_log_is_always_written_and_matches_the_history(tmp_path):
    run = quick(tmp_path, [])
    with open(run.path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx([r["val_loss"] for r in expected])
    assert {"train_loss", "val_roc_auc", "lr", "grad_norm"} <= set(rows[0])


def test_tensorboard_events_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = quick(tmp_path, ["tensorboard"])
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/roc_auc", "lr", "grad_norm", "test/roc_auc"} <= tags
    logged = [(e.step, e.value) for e in events.Scalars("val/loss")]
    assert [s for s, _ in logged] == [1, 2, 3, 4]
    assert [v for _, v in logged] == pytest.approx([r["val_loss"] for r in history(run)], rel=1e-6)
    assert events.Scalars("test/roc_auc")[0].value == pytest.approx(run.metrics["roc_auc"], rel=1e-6)


def test_mlflow_run_read_back_with_its_client_and_model_predicts(tmp_path):
    import mlflow

    run = quick(tmp_path, ["mlflow"], experiment="fitwell-test")
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs" / "mlflow.db").exists()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fitwell-test")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == run.path.name and found.info.status == "FINISHED"
    params = found.data.params
    assert params["train.epochs"] == "4" and params["data.source"] == "sklearn:breast_cancer"
    assert found.data.metrics["test_roc_auc"] == pytest.approx(run.metrics["roc_auc"])
    val_loss = client.get_metric_history(found.info.run_id, "val_loss")
    logged = sorted((m.step, m.value) for m in val_loss)
    assert [s for s, _ in logged] == [1, 2, 3, 4]
    assert [v for _, v in logged] == pytest.approx([r["val_loss"] for r in history(run)])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "metrics.json", "report.html", "audit.json", "doctor.json"} <= artifacts
    ids = json.loads((run.path / "trackers.json").read_text())
    assert ids["mlflow_run_id"] == found.info.run_id
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{found.info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    rows = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(5)
    pd.testing.assert_frame_equal(model.predict(rows), run.predict(rows))


def read_wandb_records(path: Path) -> list:
    """Decode a W&B ``.wandb`` file: a 7-byte header (':W&B', magic, version), then LevelDB-log
    records (crc32 4 bytes, length 2, type 1) in 32 KiB blocks, each a protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, offset, block = [], b"", 7, 32768
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_files_hold_the_metrics(tmp_path):
    run = quick(tmp_path, ["wandb"])
    (folder,) = (run.path / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    records = read_wandb_records(log)
    steps = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item}
            if "val_loss" in items:
                steps[items["_step"]] = items["val_loss"]
    assert sorted(steps) == [1, 2, 3, 4]
    assert [steps[k] for k in sorted(steps)] == pytest.approx([r["val_loss"] for r in history(run)])
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["train.epochs"] == 4 and config["data.source"] == "sklearn:breast_cancer"
    ids = json.loads((run.path / "trackers.json").read_text())
    assert ids["wandb_run_id"] in folder.name


class Interrupt(Exception):
    pass


def test_a_resumed_run_continues_its_mlflow_run_and_csv(tmp_path):
    import mlflow

    from fitwell.engine.callbacks import Callback

    class StopAtEpoch2(Callback):
        def on_epoch_end(self, trainer, state):
            if state.epoch == 2:
                raise Interrupt

    sections = {"data": {"source": "sklearn:breast_cancer"},
                "train": {"epochs": 4, "progress": False, "early_stopping": {"enabled": False}},
                "track": {"runs_dir": str(tmp_path / "runs"), "name": "cut", "loggers": ["mlflow"],
                          "mlflow_log_model": False}}
    with pytest.raises(Interrupt):
        train(sections, callbacks=[StopAtEpoch2()])
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (first,) = client.search_runs([client.get_experiment_by_name("fitwell").experiment_id])
    assert first.info.status == "FAILED"
    run = train(resume=tmp_path / "runs" / "cut")
    (again,) = client.search_runs([client.get_experiment_by_name("fitwell").experiment_id])
    assert again.info.run_id == first.info.run_id and again.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(again.info.run_id, "val_loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    with open(run.path / "metrics.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]
