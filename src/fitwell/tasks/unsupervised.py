"""Unsupervised runs on a table: ``clustering`` (k-means, Gaussian mixture, HDBSCAN,
agglomerative; k chosen by silhouette or BIC), ``anomaly`` (Isolation Forest scores, or an
autoencoder's reconstruction error; a threshold at the ``anomaly.contamination`` share of training
rows) and ``embedding`` (PCA to ``model.hidden_sizes[-1]`` dimensions, or an autoencoder's code).

With ``model.name`` an autoencoder family (dense, denoising, variational), the network is trained
first, by the same loop as every run (early stopping on the validation rows' reconstruction
error, checkpoints, history), and the method works on its embeddings.

The run follows the supervised path where it applies: the table is typed, split (``split.*``,
seeded) and preprocessed with the preprocessing fitted on the training rows only; the method is
fitted on the training rows and scored on the test rows once; ``data.labels``, when given, is
known groups for evaluation only (adjusted Rand, NMI, anomaly ROC AUC) and never an input. The run
directory holds the config, the preprocessing, the fitted estimators (skops), ``metrics.json``,
``test_predictions.csv`` with a 2-D map of the test rows (PCA, or UMAP: ``explain.map``), ``report.html``
and the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitwell.config.load import ConfigLike
from fitwell.config.schema import RunConfig
from fitwell.config.tasks import AUTOENCODERS, AnomalyConfig, ClusterConfig
from fitwell.errors import ConfigError, DamagedRun, UserError, did_you_mean
from fitwell.files import write_json, write_text, write_with
from fitwell.tasks.clustering import (
    anomaly_metrics,
    assign_clusters,
    cluster_metrics,
    fit_clusters,
    fit_isolation_forest,
)
from fitwell.tasks.representation import Representation, train_autoencoder

ESTIMATORS_FILE = "unsupervised.skops"


@dataclass
class Rows:
    """The typed table, its split and the preprocessing fitted on the training rows."""

    typed: pd.DataFrame
    split: Any
    preprocessor: Any
    truth: pd.Series | None
    notes: list[str]

    def part_frame(self, name: str) -> pd.DataFrame:
        return self.typed.iloc[getattr(self.split, name)]

    def truth_of(self, name: str):
        return None if self.truth is None else self.truth.iloc[getattr(self.split, name)].to_numpy()


def prepare_rows(config: RunConfig, data: pd.DataFrame | None, preprocessor=None) -> Rows:
    """Type and split the table; fit the preprocessing on the training rows (``preprocessor``: a
    resumed run's, already fitted)."""
    from fitwell.data.clean import type_columns
    from fitwell.data.columns import infer_columns
    from fitwell.data.prepare import load_frame
    from fitwell.data.preprocess import Preprocessor
    from fitwell.data.split import split_rows

    raw = load_frame(config, data)
    labels = config.data.labels
    if labels is not None and labels not in raw.columns:
        raise ConfigError(f"data.labels: {labels!r} (labels for evaluation only) is not in the data."
                          f"{did_you_mean(labels, raw.columns)}")
    plan = infer_columns(raw, labels, config.data.columns, list(config.data.drop))
    notes: list[str] = list(plan.notes)
    typed = type_columns(raw, plan, config.data.normalize_strings, notes.append).reset_index(drop=True)
    split = split_rows(typed, None, config.split, config.data.task, config.seed)
    if preprocessor is None:
        preprocessor = Preprocessor(plan, config.preprocess, config.data.task, config.data.normalize_strings)
        preprocessor.fit(typed.iloc[split.train], None)
    if preprocessor.code_columns_:
        notes.append(f"left out {', '.join(preprocessor.code_columns_)}: more categories than"
                     f" preprocess.onehot_max_categories ({config.preprocess.onehot_max_categories}) have no"
                     " distance here; raise it to one-hot them")
    truth = None if labels is None else raw[labels].reset_index(drop=True)
    return Rows(typed, split, preprocessor, truth, notes)


def fit_method(config: RunConfig, X: np.ndarray, errors: np.ndarray | None = None
               ) -> tuple[dict[str, Any], dict]:
    """The task's estimators fitted on the training rows ``X`` (and their reconstruction
    ``errors`` when an autoencoder made ``X``), and what was chosen."""
    from sklearn.decomposition import PCA

    task = config.data.task
    if task == "clustering":
        cluster = config.cluster or ClusterConfig()
        estimators, _, info = fit_clusters(cluster.method, cluster.k, X, config.seed, cluster.k_max,
                                           cluster.min_cluster_size)
        return estimators, info
    if task == "anomaly":
        anomaly = config.anomaly or AnomalyConfig()
        estimators: dict[str, Any] = {}
        if anomaly.method == "reconstruction":
            scores = errors
        else:
            estimators["forest"], scores = fit_isolation_forest(X, config.seed)
        threshold = float(np.quantile(scores, 1 - anomaly.contamination))
        return estimators, {"method": anomaly.method, "threshold": threshold,
                            "contamination": anomaly.contamination, "label": anomaly.label}
    if errors is not None:  # the autoencoder's code is the embedding
        return {}, {"method": config.model.name, "dimensions": int(X.shape[1])}
    size = min(config.model.hidden_sizes[-1], X.shape[1], len(X))
    pca = PCA(n_components=size, random_state=config.seed).fit(X)
    return {"pca": pca}, {"method": "pca", "dimensions": size,
                          "explained_variance": float(pca.explained_variance_ratio_.sum())}


def apply_method(task: str, estimators: dict[str, Any], info: dict, X: np.ndarray,
                 errors: np.ndarray | None = None) -> pd.DataFrame:
    """What predict returns for rows ``X`` (and their reconstruction ``errors``): cluster ids,
    anomaly scores and flags, or embeddings."""
    if task == "clustering":
        return pd.DataFrame({"cluster": assign_clusters(estimators, X)})
    if task == "anomaly":
        scores = errors if info["method"] == "reconstruction" else -estimators["forest"].score_samples(X)
        return pd.DataFrame({"anomaly_score": scores, "anomaly": scores > info["threshold"]})
    values = estimators["pca"].transform(X) if "pca" in estimators else X
    return pd.DataFrame(values, columns=[f"embedding_{i}" for i in range(values.shape[1])])


def score(task: str, X: np.ndarray, predicted: pd.DataFrame, info: dict, seed: int, truth) -> dict:
    if task == "clustering":
        return cluster_metrics(X, predicted["cluster"].to_numpy(), seed, truth)
    if task == "anomaly":
        scores = predicted["anomaly_score"].to_numpy()
        return anomaly_metrics(scores, info["threshold"], truth, info.get("label"))
    return {k: info[k] for k in ("dimensions", "explained_variance") if k in info}


def fit_unsupervised(config: ConfigLike | None = None,
                     overrides: Sequence[str] | Mapping[str, Any] | None = None, *,
                     data: pd.DataFrame | None = None, console=None, started_at: float | None = None,
                     score_test: bool = True, resume: str | Path | None = None,
                     callbacks: Sequence[Any] = ()) -> UnsupervisedRun:
    """Fit a clustering, anomaly or embedding run and return it, scored on the validation rows and
    on the test rows once (``score_test=False``, a tuning trial: never on the test rows).
    ``resume``: continue an autoencoder run's training from its checkpoint (the same ``data``);
    ``callbacks``: fitwell callbacks for the autoencoder's loop.

    Example:
        >>> run = fit_unsupervised({"task": "clustering", "data": {"source": "customers.csv"},
        ...                         "cluster": {"method": "kmeans", "k": "auto"}})  # doctest: +SKIP
        >>> run.metrics["silhouette"], run.predict(new_rows)  # doctest: +SKIP
    """
    from fitwell.data.preprocess import Preprocessor
    from fitwell.engine.build import seed_everything
    from fitwell.run import RunStart, config_stem, console_say, guard, load_run_config, resumed_config
    from fitwell.track.run_dir import RunDir, default_run_name

    say = console_say(console)
    started_at = time.monotonic() if started_at is None else started_at
    if resume is not None:
        resolved, run_dir = resumed_config(resume, overrides), RunDir(resume)
        say(f"resuming [bold]{run_dir.path}[/]: the autoencoder continues from its checkpoint")
    else:
        resolved = load_run_config(config, overrides)
        track = resolved.track
        run_dir = RunDir.plan(track.runs_dir, track.name or default_run_name(config_stem(config, "run")),
                              track.overwrite)
    if resolved.train.devices * resolved.train.num_nodes > 1:
        raise ConfigError(f"train.devices: a {resolved.data.task} run fits on one process; drop it")
    seed_everything(resolved.seed)
    rows = prepare_rows(resolved, data, Preprocessor.load(run_dir.preprocess) if resume is not None else None)
    for note in rows.notes:
        say(f"[yellow]data:[/] {note}")
    start = RunStart(resolved, None, run_dir, say, console, started_at=started_at, resumed=resume is not None)
    with guard(start):
        return fit_and_write(start, rows, score_test, callbacks)


def validation_scores(config: RunConfig, rows: Rows, representation, estimators, info: dict) -> dict:
    """The method's scores on the validation rows, ``val_``-named (what ``fitwell tune`` compares)."""
    if not len(rows.split.val):
        return {}
    X, errors = representation.of(rows.part_frame("val"))
    predicted = apply_method(config.data.task, estimators, info, X, errors)
    found = score(config.data.task, X, predicted, info, config.seed, rows.truth_of("val"))
    out = {f"val_{k}": v for k, v in found.items() if isinstance(v, (int, float))}
    if (info.get("autoencoder") or {}).get("val_loss") is not None:
        out["val_loss"] = info["autoencoder"]["val_loss"]
    return out


def fit_and_write(start, rows: Rows, score_test: bool = True, callbacks=()) -> UnsupervisedRun:

    from fitwell.config.load import dump_config
    from fitwell.track.loggers import build_trackers
    from fitwell.track.run_dir import environment

    config, run_dir, say = start.config, start.run_dir, start.say
    task, seed = config.data.task, config.seed
    if not start.resumed:
        run_dir.make()
        run_dir.set_status("running")
        write_text(run_dir.config, dump_config(config))
        write_json(run_dir.env, environment(seed))
        rows.preprocessor.save(run_dir.preprocess)
    trackers = build_trackers(config.track, run_dir.path)
    say(f"task [bold]{task}[/], {len(rows.typed)} rows -> train {len(rows.split.train)}, val"
        f" {len(rows.split.val)}, test {len(rows.split.test)}")
    start.training_started = True
    representation, trained = Representation(rows.preprocessor), None
    if config.model.name in AUTOENCODERS:  # the trackers log its epochs
        network, trained = train_autoencoder(start, rows, [*callbacks, *trackers])
        representation = Representation(rows.preprocessor, network)
    else:
        start_trackers(trackers, config)
    train, train_errors = representation.of(rows.part_frame("train"))
    estimators, info = fit_method(config, train, train_errors)
    if trained:
        info["autoencoder"] = trained
    scored = "test" if score_test and len(rows.split.test) else "val" if len(rows.split.val) else "train"
    X, errors = representation.of(rows.part_frame(scored))
    predicted = apply_method(task, estimators, info, X, errors)
    metrics = score(task, X, predicted, info, seed, rows.truth_of(scored))
    train_metrics = score(task, train, apply_method(task, estimators, info, train, train_errors), info, seed,
                          rows.truth_of("train"))
    coordinates = map_rows(config.explain.map, train, X, seed)
    table = predicted.assign(row=getattr(rows.split, scored), map_x=coordinates[:, 0],
                             map_y=coordinates[:, -1])
    if rows.truth is not None:
        table["truth"] = rows.truth_of(scored)
    write_with(run_dir.test_predictions, lambda tmp: table.to_csv(tmp, index=False))
    summary = {"task": task, "scored_on": scored, "test": metrics if scored == "test" else {},
               "validation": validation_scores(config, rows, representation, estimators, info),
               "train": train_metrics, "fit": info,
               "rows": {"train": len(train), "val": len(rows.split.val), "test": len(rows.split.test)},
               "features": int(train.shape[1]), "notes": rows.notes, "map": config.explain.map,
               "duration_s": round(time.monotonic() - start.started_at, 3)}
    finish_unsupervised_run(start, estimators, summary, trackers)
    return UnsupervisedRun(run_dir.path, config, representation, estimators, summary)


def map_rows(method: str, train: np.ndarray, X: np.ndarray, seed: int) -> np.ndarray:
    """2-D coordinates of rows ``X`` for the report, the map fitted on the training rows: PCA, or
    UMAP (McInnes et al. 2018; the ``umap`` extra)."""
    if train.shape[1] < 2:
        return np.repeat(X[:, :1], 2, axis=1)
    if method == "umap":
        try:
            import umap
        except ImportError as err:
            raise ConfigError("explain.map: umap needs the umap-learn package: pip install 'fitwell[umap]'"
                              " (or explain.map: pca)") from err
        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit(train).transform(X)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit(train).transform(X)


def start_trackers(trackers, config: RunConfig) -> None:
    """A run without a training loop starts its trackers itself (their own start hook)."""
    from types import SimpleNamespace

    for tracker in trackers:
        tracker.on_fit_start(SimpleNamespace(config=config.model_dump(mode="json")),
                             SimpleNamespace(history=[]))


def finish_unsupervised_run(start, estimators: dict[str, Any], summary: dict, trackers=()) -> None:
    import skops.io as sio

    from fitwell.run import finish_task_run
    from fitwell.tasks.unsupervised_report import render_unsupervised_run

    run_dir = start.run_dir
    write_with(run_dir.path / ESTIMATORS_FILE, lambda tmp: sio.dump(estimators, tmp))
    write_json(run_dir.path / "unsupervised.json", {"task": summary["task"], "fit": summary["fit"]})
    finish_task_run(start, summary, render_unsupervised_run, trackers)


@dataclass
class UnsupervisedRun:
    """A finished clustering, anomaly or embedding run."""

    path: Path
    config: RunConfig
    representation: Representation
    estimators: dict[str, Any]
    summary: dict

    @property
    def preprocessor(self):
        return self.representation.preprocessor

    @property
    def task(self) -> str:
        return self.config.data.task

    @property
    def metrics(self) -> dict:
        return self.summary.get("test", {})

    def predict(self, data) -> pd.DataFrame:
        """Cluster ids, anomaly scores and flags, or embeddings of new rows (a DataFrame or a
        CSV/Parquet/JSONL path), in their order."""
        from fitwell.data.sources import read_table

        frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data))
        X, errors = self.representation.of(frame)
        return apply_method(self.task, self.estimators, self.summary["fit"], X, errors)


    def evaluate(self, data) -> dict:
        """The run's scores on other rows (a DataFrame or a file); with the ``data.labels`` column
        present, against those known groups too."""
        from fitwell.data.sources import read_table

        frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data))
        labels = self.config.data.labels
        truth = frame[labels].to_numpy() if labels and labels in frame.columns else None
        X, errors = self.representation.of(frame)
        predicted = apply_method(self.task, self.estimators, self.summary["fit"], X, errors)
        return score(self.task, X, predicted, self.summary["fit"], self.config.seed, truth)


def load_unsupervised(path: str | Path) -> UnsupervisedRun:
    """A finished unsupervised run directory, its artifacts checked against the manifest."""
    import skops.io as sio

    from fitwell.data.preprocess import Preprocessor
    from fitwell.run import load_run_config
    from fitwell.track.run_dir import RunDir

    run_dir = RunDir(path)
    estimators_path = run_dir.path / ESTIMATORS_FILE
    run_dir.require(run_dir.config, estimators_path, run_dir.metrics, run_dir.preprocess / "preprocess.skops")
    run_dir.verify(estimators_path, run_dir.config)
    untrusted = sio.get_untrusted_types(file=estimators_path)
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if foreign:
        raise DamagedRun(f"{estimators_path} holds types fitwell does not trust: {', '.join(foreign)}")
    estimators = sio.load(estimators_path, trusted=untrusted)
    config = load_run_config(run_dir.config)
    if config.data.task not in ("clustering", "anomaly", "embedding"):
        raise UserError(f"{run_dir.path} is a {config.data.task} run, not an unsupervised one")
    network = None
    if config.model.name in AUTOENCODERS:
        from safetensors.torch import load_file

        from fitwell.models.registry import rebuild_model

        run_dir.require(run_dir.model, run_dir.model_spec)
        run_dir.verify(run_dir.model, run_dir.model_spec)
        network = rebuild_model(run_dir.read_json(run_dir.model_spec))
        network.load_state_dict(load_file(run_dir.model), strict=True)
    representation = Representation(Preprocessor.load(run_dir.preprocess), network)
    summary = run_dir.read_json(run_dir.metrics)
    return UnsupervisedRun(run_dir.path, config, representation, estimators, summary)
