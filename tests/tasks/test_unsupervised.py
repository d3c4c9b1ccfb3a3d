"""Clustering, anomaly detection and embeddings of a table: the same config, run directory,
preprocessing and predict as a supervised run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

import fitwell
from fitwell.cli import run_cli
from fitwell.config.schema import SplitConfig
from fitwell.data.split import split_rows
from fitwell.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def blobs(n=600, seed=0):
    """Four well-separated groups in 5 numbers, a category that follows the group, the group id."""
    X, group = make_blobs(n_samples=n, centers=4, n_features=5, cluster_std=1.0, center_box=(-12, 12),
                          random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["shop"] = np.array(["north", "south", "east", "west"])[group]
    frame["group"] = group
    return frame


@pytest.mark.parametrize("method", ["kmeans", "gmm", "agglomerative", "hdbscan"])
def test_clustering_finds_the_groups_and_predicts_new_rows(tmp_path, method):
    frame = blobs()
    run = fitwell.train({"task": "clustering", "data": {"labels": "group"}, "cluster": {"method": method},
                         "track": {"runs_dir": str(tmp_path), "name": method}}, data=frame)
    assert run.metrics["clusters"] == 4 and run.metrics["adjusted_rand"] > 0.95
    assert run.metrics["silhouette"] > 0.5
    if method != "hdbscan":
        assert run.summary["fit"]["k_chosen"] == 4  # k: auto by silhouette (BIC for gmm)
    new = blobs(n=200, seed=0).drop(columns="group")  # the same centres, other rows
    loaded = fitwell.load_run(run.path)
    clusters = loaded.predict(new)["cluster"]
    truth = blobs(n=200, seed=0)["group"]
    assert pd.crosstab(clusters, truth).max(axis=1).sum() / len(new) > 0.95  # each cluster one group
    for name in ("config.yaml", "preprocess/preprocess.skops", "unsupervised.skops", "metrics.json",
                 "test_predictions.csv", "report.html", "manifest.json"):
        assert (run.path / name).is_file(), name
    assert "<svg" in (run.path / "report.html").read_text()


def test_the_preprocessing_is_fitted_on_the_training_rows_and_labels_are_never_an_input(tmp_path):
    frame = blobs()
    run = fitwell.train({"task": "clustering", "data": {"labels": "group"}, "cluster": {"k": 4},
                         "track": {"runs_dir": str(tmp_path)}}, data=frame)
    assert "group" not in run.preprocessor.input_columns()
    scaler = run.preprocessor.numeric_.named_transformers_["numeric"]["scale"]
    split = split_rows(frame, None, SplitConfig(), "clustering", 0)  # the run's seeded split
    numbers = frame[[f"x{i}" for i in range(5)]]
    assert np.allclose(scaler.mean_, numbers.iloc[split.train].mean())
    assert not np.allclose(scaler.mean_, numbers.mean())
    scored = pd.read_csv(run.path / "test_predictions.csv")["row"]
    assert sorted(scored) == sorted(split.test)  # scored once, on the test rows


def test_isolation_forest_scores_find_injected_outliers(tmp_path):
    frame = outlier_frame()
    run = fitwell.train({"task": "anomaly", "data": {"labels": "is_outlier"},
                         "anomaly": {"contamination": 0.05}, "split": {"train": 0.6, "val": 0.1, "test": 0.3},
                         "track": {"runs_dir": str(tmp_path)}}, data=frame)
    assert run.metrics["roc_auc"] > 0.97 and run.metrics["average_precision"] > 0.8
    assert 0.02 < run.metrics["flagged_share"] < 0.1
    flagged = run.predict(pd.DataFrame({"a": [0.1, 9.0], "b": [0.0, -9.0], "c": [0.2, 9.0], "d": [0.0, 9.0]}))
    assert flagged["anomaly"].tolist() == [False, True]
    assert flagged["anomaly_score"][1] > flagged["anomaly_score"][0]


def test_embeddings_have_the_asked_width(tmp_path):
    run = fitwell.train({"task": "embedding", "model": {"hidden_sizes": [2]},
                         "track": {"runs_dir": str(tmp_path)}}, data=blobs().drop(columns="group"))
    assert run.metrics["dimensions"] == 2 and run.metrics["explained_variance"] > 0.5
    assert list(run.predict(blobs(50).drop(columns="group")).columns) == ["embedding_0", "embedding_1"]


def test_the_shipped_clustering_example_through_the_command_line(tmp_path, capsys):
    assert run_cli(["train", str(ROOT / "examples" / "wine_clusters.yaml"), f"track.runs_dir={tmp_path}",
                    "track.name=wine"]) == 0
    out = capsys.readouterr().out
    assert "test metrics (clustering)" in out and "adjusted_rand" in out
    metrics = json.loads((tmp_path / "wine" / "metrics.json").read_text())["test"]
    assert metrics["adjusted_rand"] > 0.6  # three cultivars; a random grouping scores about 0
    rows = tmp_path / "rows.csv"
    from sklearn.datasets import load_wine

    load_wine(as_frame=True).data.head(5).to_csv(rows, index=False)
    assert run_cli(["predict", str(tmp_path / "wine"), "--data", str(rows)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "cluster"


@pytest.mark.parametrize("config, message", [
    ({"task": "anomaly", "cluster": {"k": 3}}, r"the cluster section belongs to a clustering run"),
    ({"task": "clustering", "data": {"labels": "grup"}}, r"data\.labels: 'grup'.*group"),
    ({"task": "clustering", "data": {"target": "group"}}, r"data\.target: a clustering run has no target"),
    ({"task": "clustering", "cluster": {"k": 1}}, r"cluster\.k"),
])
def test_a_bad_unsupervised_config_names_the_key(tmp_path, config, message):
    with pytest.raises(ConfigError, match=message):
        fitwell.train({**config, "track": {"runs_dir": str(tmp_path)}}, data=blobs())
    assert not any(tmp_path.iterdir())


def outlier_frame():
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (950, 4))
    outliers = rng.normal(0, 1, (50, 4)) + rng.choice([-6, 6], (50, 4))
    frame = pd.DataFrame(np.vstack([normal, outliers]), columns=list("abcd"))
    frame["is_outlier"] = [False] * 950 + [True] * 50
    return frame


@pytest.mark.parametrize("family", ["autoencoder", "denoising_autoencoder", "variational_autoencoder"])
def test_an_autoencoders_reconstruction_error_finds_injected_outliers(tmp_path, family):
    frame = outlier_frame()
    run = fitwell.train({"task": "anomaly", "data": {"labels": "is_outlier"},
                         "model": {"name": family, "hidden_sizes": [16, 2]},
                         "anomaly": {"method": "reconstruction"},
                         "train": {"epochs": 40, "lr": 3e-3, "batch_size": 64, "progress": False},
                         "track": {"runs_dir": str(tmp_path), "name": family}}, data=frame)
    assert run.metrics["roc_auc"] > 0.97
    history = [json.loads(line) for line in (run.path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # trained by the loop, early stopping on val
    loaded = fitwell.load_run(run.path)  # model.safetensors + model.json rebuild the same network
    rows = frame.drop(columns="is_outlier").tail(60)
    pd.testing.assert_frame_equal(loaded.predict(rows), run.predict(rows))


def test_clusters_and_embeddings_of_an_autoencoders_code(tmp_path):
    X, group = make_blobs(n_samples=600, centers=4, n_features=8, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
    train = {"epochs": 60, "lr": 3e-3, "progress": False}
    run = fitwell.train({"task": "clustering", "data": {"labels": "group"}, "train": train,
                         "model": {"name": "autoencoder", "hidden_sizes": [32, 3]},
                         "track": {"runs_dir": str(tmp_path), "name": "clusters"}},
                        data=frame.assign(group=group))
    assert run.metrics["adjusted_rand"] > 0.95 and run.summary["fit"]["k_chosen"] == 4
    run = fitwell.train({"task": "embedding", "train": train,
                         "model": {"name": "variational_autoencoder", "hidden_sizes": [32, 3]},
                         "track": {"runs_dir": str(tmp_path), "name": "codes"}}, data=frame)
    assert run.predict(frame.head(5)).shape == (5, 3)


def test_tune_searches_the_clustering_and_scores_the_best_once(tmp_path):
    from fitwell.tune.study import tune

    config = {"task": "clustering", "data": {"labels": "group"}, "cluster": {"method": "kmeans"},
              "tune": {"trials": 4, "sampler": "grid", "space": {"cluster.k": {"type": "categorical",
                                                                               "choices": [2, 3, 4, 6]}}},
              "track": {"runs_dir": str(tmp_path)}}
    summary = tune(config, data=blobs(), study="k")
    assert summary["metric"] == ["val_silhouette"] and summary["directions"] == ["maximize"]
    assert summary["best_params"] == {"cluster.k": 4}  # the seeded data has four groups
    assert summary["test"]["adjusted_rand"] > 0.95  # the refitted best, scored on the test rows once
    trial = json.loads((tmp_path / "k" / "trial-0" / "metrics.json").read_text())
    assert trial["test"] == {} and "val_silhouette" in trial["validation"]


def test_the_reports_map_can_be_umap(tmp_path):
    pytest.importorskip("umap", reason="explain.map umap needs the umap extra (pip install 'fitwell[umap]')")
    run = fitwell.train({"task": "clustering", "cluster": {"k": 4}, "explain": {"map": "umap"},
                         "track": {"runs_dir": str(tmp_path)}}, data=blobs().drop(columns="group"))
    table = pd.read_csv(run.path / "test_predictions.csv")
    centres = table.groupby("cluster")[["map_x", "map_y"]].mean()
    spread = table.groupby("cluster")[["map_x", "map_y"]].std().max().max()
    points = centres.to_numpy()
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(points) for b in points[i + 1:]]
    assert min(gaps) > 2 * spread  # the four groups stay apart on the map
    assert "2-D UMAP map" in (run.path / "report.html").read_text()


def test_umap_without_its_extra_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(ConfigError, match=r"pip install 'fitwell\[umap\]'"):
        fitwell.train({"task": "clustering", "cluster": {"k": 4}, "explain": {"map": "umap"},
                       "track": {"runs_dir": str(tmp_path)}}, data=blobs().drop(columns="group"))


def test_anomaly_and_embedding_runs_through_the_command_line(tmp_path, capsys):
    example = ROOT / "examples" / "breast_cancer_anomaly.yaml"
    assert run_cli(["train", str(example), f"track.runs_dir={tmp_path}", "track.name=anomaly"]) == 0
    assert "roc_auc" in capsys.readouterr().out
    from sklearn.datasets import load_breast_cancer

    rows = tmp_path / "rows.csv"
    load_breast_cancer(as_frame=True).data.head(4).to_csv(rows, index=False)
    assert run_cli(["predict", str(tmp_path / "anomaly"), "--data", str(rows)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "anomaly_score,anomaly"
    blobs().drop(columns="group").to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "embed.yaml").write_text(f"task: embedding\ndata: {{source: {tmp_path / 'table.csv'}}}\n"
                                         "model: {name: autoencoder, hidden_sizes: [16, 3]}\n"
                                         "train: {epochs: 5, progress: false}\n")
    config = str(tmp_path / "embed.yaml")
    assert run_cli(["train", config, f"track.runs_dir={tmp_path}", "track.name=codes"]) == 0
    capsys.readouterr()
    assert run_cli(["predict", str(tmp_path / "codes"), "--data", str(tmp_path / "table.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "embedding_0,embedding_1,embedding_2"


def test_a_table_and_a_task_are_enough_and_evaluate_scores_other_rows(tmp_path, capsys):
    blobs().to_csv(tmp_path / "table.csv", index=False)
    assert run_cli(["train", str(tmp_path / "table.csv"), "--task", "clustering",
                    f"track.runs_dir={tmp_path}", "track.name=groups", "data.labels=group"]) == 0
    capsys.readouterr()
    blobs(n=300, seed=0).to_csv(tmp_path / "more.csv", index=False)
    assert run_cli(["evaluate", str(tmp_path / "groups"), "--data", str(tmp_path / "more.csv")]) == 0
    out = capsys.readouterr().out
    assert "adjusted_rand" in out and "silhouette" in out  # the labels column was in the file


def test_a_gaussian_mixture_picks_its_covariance_and_k_by_bic(tmp_path):
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    run = fitwell.train({"task": "clustering", "data": {"labels": "cultivar"}, "cluster": {"method": "gmm"},
                         "track": {"runs_dir": str(tmp_path)}}, data=wine.data.assign(cultivar=wine.target))
    # 124 training rows x 13 numbers: full covariances cost too many parameters; diagonal ones win
    assert run.summary["fit"]["covariance_type"] == "diag" and run.summary["fit"]["k_chosen"] == 3
    assert run.metrics["adjusted_rand"] > 0.6
