"""Trackers: follow a run in the tools people already use. The run directory and ``metrics.csv``
always; TensorBoard, MLflow (a SQLite store under ``runs/`` by default) and Weights & Biases
(offline) when ``track.loggers`` names them.

A tracker is a callback: it starts with the fit, logs each epoch's row, and ``finish`` logs the
test metrics, the run's files and (MLflow) the model once the run has written them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from fitwell.engine.callbacks.base import Callback
from fitwell.errors import ConfigError

ARTIFACTS = ("config.yaml", "metrics.json", "history.jsonl", "metrics.csv", "audit.json", "data.json",
             "doctor.json", "fairness.json", "importance.json", "report.html", "env.json")
TRACKERS_FILE = "trackers.json"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists stay values.

    Example:
        >>> flatten({"train": {"lr": 0.1, "schedule": {"name": "none"}}, "seed": 0})
        {'train.lr': 0.1, 'train.schedule.name': 'none', 'seed': 0}
    """
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _require(module: str, package: str):
    """Import an optional tracker's package, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"track.loggers: this logger needs the {package} package: pip install"
                          f" 'fitwell[track]' (or pip install {package})") from err


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


PRIVACY_NUMBERS = ("epsilon", "delta", "training_epsilon", "noise_multiplier", "sample_rate", "steps",
                   "max_grad_norm")


def final_numbers(summary: dict) -> dict[tuple[str, str], float]:
    """What every tracker records at the end: the test metrics and, for a private run, its
    privacy (epsilon spent, delta, noise multiplier, ...), keyed by (group, name)."""
    out = {("test", k): v for k, v in _numbers(summary.get("test", {})).items()}
    privacy = summary.get("privacy") or {}
    out.update({("privacy", k): v for k, v in _numbers(privacy).items() if k in PRIVACY_NUMBERS})
    return out


class Tracker(Callback):
    """Base of the trackers: ``start`` once, ``log`` every epoch, ``finish`` after the run."""

    order = 85
    name = "tracker"

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.config: dict[str, Any] = {}
        self._started = False
        self._finished = False

    def on_fit_start(self, trainer, state):
        if not self._started:
            self.config = dict(trainer.config)  # resolved: batch_size/lr "auto" already measured
            self.start(state.history)
            self._started = True

    def on_epoch_end(self, trainer, state):
        self.log(state.history[-1], state.epoch)

    def on_exception(self, trainer, state, error):
        self.finish({}, "FAILED")

    def start(self, history: list[dict]) -> None: ...
    def log(self, row: dict, epoch: int) -> None: ...
    def close(self, summary: dict, status: str) -> None: ...

    def finish(self, summary: dict, status: str = "FINISHED") -> None:
        if self._started and not self._finished:
            self._finished = True
            self.close(summary, status)

    def _ids(self) -> dict:
        path = self.run_dir / TRACKERS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_ids(self, **values: Any) -> None:
        ids = self._ids()
        ids.update(values)
        (self.run_dir / TRACKERS_FILE).write_text(json.dumps(ids, indent=2))


class CSVLogger(Tracker):
    """``metrics.csv``: one row per epoch, one column per metric. A row with a new metric rewrites
    the file (atomically) with the wider header; otherwise the row is appended."""

    name = "csv"

    def start(self, history):
        self._rows = [dict(row) for row in history]
        self._columns: list[str] = []
        self._write()

    def log(self, row, epoch):
        self._rows.append(dict(row))
        if all(k in self._columns for k in row):  # same columns: append one line
            buffer = io.StringIO()
            csv.DictWriter(buffer, fieldnames=self._columns).writerow(row)
            with open(self.run_dir / "metrics.csv", "a") as handle:
                handle.write(buffer.getvalue())
        else:
            self._write()

    def _write(self):
        """The whole file (a metric appeared): header and every row, replaced atomically."""
        for row in self._rows:
            self._columns.extend(k for k in row if k not in self._columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns)
        writer.writeheader()
        writer.writerows(self._rows)
        path = self.run_dir / "metrics.csv"
        tmp = path.with_name(".metrics.csv.tmp")
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, path)


def _tag(key: str) -> str:
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


class TensorBoardLogger(Tracker):
    """Event files under ``<run>/tensorboard``: ``train/loss``, ``val/<metric>``, ``lr``,
    ``grad_norm`` per epoch, the config as text, and ``test/<metric>`` at the end."""

    name = "tensorboard"

    def start(self, history):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if not history:
            text = "\n".join(f"    {k}: {v}" for k, v in flatten(self.config).items())
            self.writer.add_text("config", text)

    def log(self, row, epoch):
        for key, value in _numbers(row).items():
            self.writer.add_scalar(_tag(key), value, epoch)
        self.writer.flush()

    def close(self, summary, status):
        step = summary.get("epochs", 0)
        for (group, key), value in final_numbers(summary).items():
            self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.add_text("status", status)
        self.writer.close()


class MLflowLogger(Tracker):
    """An MLflow run per fitwell run: parameters (the flattened config), per-epoch metrics, test
    metrics, the run's files as artifacts, and the model as a pyfunc model that predicts raw rows.

    The store is ``track.mlflow_uri``, by default ``sqlite:///<runs_dir>/mlflow.db`` with
    artifacts in ``<runs_dir>/mlartifacts``. Resuming a run continues its MLflow run.
    """

    name = "mlflow"

    def __init__(self, run_dir, uri: str | None, experiment: str, log_model: bool = True):
        super().__init__(run_dir)
        runs_dir = self.run_dir.parent.resolve()
        self.uri = uri or f"sqlite:///{runs_dir / 'mlflow.db'}"
        self.artifact_location = (runs_dir / "mlartifacts").as_uri() if uri is None else None
        self.experiment, self.log_model = experiment, log_model

    def start(self, history):
        mlflow = _require("mlflow", "mlflow")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            self.experiment, artifact_location=self.artifact_location)
        run_id = self._ids().get("mlflow_run_id")
        if run_id is None:
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                         tags={"fitwell.run_dir": str(self.run_dir.resolve())})
            run_id = run.info.run_id
            self._save_ids(mlflow_run_id=run_id, mlflow_uri=self.uri)
            from mlflow.entities import Param

            params = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                      for k, v in flatten(self.config).items()]
            for i in range(0, len(params), 100):  # MLflow's limit per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def log(self, row, epoch):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in _numbers(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, summary, status):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        test = [Metric(f"{group}_{k}", v, now, summary.get("epochs", 0))
                for (group, k), v in final_numbers(summary).items()]
        if test:
            self.client.log_batch(self.run_id, metrics=test)
        for name in ARTIFACTS:
            if (self.run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        if status == "FINISHED" and self.log_model and (self.run_dir / "model.safetensors").exists():
            self._log_model()
        self.client.set_terminated(self.run_id, status=status)

    def _log_model(self):
        import mlflow

        code = Path(__file__).parents[1] / "serve" / "mlflow_pyfunc.py"  # MLflow loads it by path
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "run"
            shutil.copytree(self.run_dir, bundle, ignore=shutil.ignore_patterns(
                "checkpoints", "tensorboard", "wandb", "*.tmp"))
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(self.uri)
            try:
                with mlflow.start_run(run_id=self.run_id):
                    mlflow.pyfunc.log_model(name="model", python_model=str(code),
                                            artifacts={"run": str(bundle)},
                                            pip_requirements=[_requirement()])
            finally:
                mlflow.set_tracking_uri(previous)


def _requirement() -> str:
    from importlib import metadata

    try:
        return f"fitwell=={metadata.version('fitwell')}"
    except metadata.PackageNotFoundError:
        return "fitwell"


class WandbLogger(Tracker):
    """A Weights & Biases run in offline mode under ``<run>/wandb`` (``wandb sync`` uploads it
    later); config, per-epoch metrics and the test metrics in the summary. Never touches the
    network."""

    name = "wandb"

    def __init__(self, run_dir, project: str):
        super().__init__(run_dir)
        self.project = project

    def start(self, history):
        wandb = _require("wandb", "wandb")
        os.environ.setdefault("WANDB_SILENT", "true")
        run_id = self._ids().get("wandb_run_id")
        if run_id is None:
            import secrets

            run_id = secrets.token_hex(4)  # W&B run ids: short, lowercase alphanumeric
            self._save_ids(wandb_run_id=run_id)
        self.run = wandb.init(mode="offline", dir=str(self.run_dir), project=self.project,
                              name=self.run_dir.name, id=run_id, resume="allow",
                              config=flatten(self.config), settings=wandb.Settings(
                                  console="off", save_code=False, x_disable_stats=True))

    def log(self, row, epoch):
        self.run.log(_numbers(row), step=epoch)

    def close(self, summary, status):
        for (group, key), value in final_numbers(summary).items():
            self.run.summary[f"{group}_{key}"] = value
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def build_trackers(track, run_dir: Path) -> list[Tracker]:
    """The trackers ``track.loggers`` names, in that order (``csv`` is always added)."""
    names = list(dict.fromkeys(["csv", *track.loggers]))
    built: list[Tracker] = []
    for name in names:
        if name == "csv":
            built.append(CSVLogger(run_dir))
        elif name == "tensorboard":
            built.append(TensorBoardLogger(run_dir))
        elif name == "mlflow":
            built.append(MLflowLogger(run_dir, track.mlflow_uri, track.experiment, track.mlflow_log_model))
        else:
            built.append(WandbLogger(run_dir, track.experiment))
    return built
