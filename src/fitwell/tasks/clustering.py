"""The scikit-learn side of the unsupervised tasks: clusterers (k chosen by silhouette or BIC),
anomaly scores with a contamination threshold, and the metrics of each.

Methods without a ``predict`` of their own (agglomerative, HDBSCAN) assign a new row the cluster
of its nearest training rows (a k-nearest-neighbours vote over the training rows' labels), which
is how they are used on rows they were not fitted on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fitwell.errors import DataError

SILHOUETTE_ROWS = 5_000  # rows the silhouette is computed on (it is quadratic in rows)
AGGLOMERATIVE_ROWS = 20_000  # agglomerative clustering is quadratic in memory: fitted on a sample


def silhouette(X: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    keep = labels >= 0  # HDBSCAN's noise (-1) is no cluster
    if len(set(labels[keep])) < 2 or keep.sum() <= len(set(labels[keep])):
        return float("nan")
    return float(silhouette_score(X[keep], labels[keep], sample_size=min(SILHOUETTE_ROWS, int(keep.sum())),
                                  random_state=seed))


COVARIANCES = ("full", "diag")  # a Gaussian mixture's covariance types, chosen by BIC with k


def build_clusterer(method: str, k: int | None, seed: int, min_cluster_size: int = 5,
                    covariance: str = "full"):
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=4, random_state=seed)
    if method == "gmm":
        return GaussianMixture(n_components=k, covariance_type=covariance, n_init=2, random_state=seed)
    if method == "agglomerative":
        return AgglomerativeClustering(n_clusters=k, linkage="ward")
    return HDBSCAN(min_cluster_size=min_cluster_size, copy=True)


def mixture_bic(X: np.ndarray, k: int, seed: int) -> tuple[float, str]:
    """The lowest BIC of a k-component Gaussian mixture over the covariance types, and its type: a
    full covariance per component is k * d(d+1)/2 numbers, too many for a small wide table."""
    found = {cov: float(build_clusterer("gmm", k, seed, covariance=cov).fit(X).bic(X)) for cov in COVARIANCES}
    best = min(found, key=found.get)
    return found[best], best


def choose_k(method: str, X: np.ndarray, k_max: int, seed: int) -> tuple[int, dict[int, float], str]:
    """The k with the best silhouette (kmeans, agglomerative) or the lowest BIC (gmm, over its
    covariance types too), 2..k_max."""
    top = min(k_max, len(X) - 1)
    if top < 2:
        raise DataError(f"{len(X)} training rows cannot be split into 2 or more clusters")
    scores: dict[int, float] = {}
    for k in range(2, top + 1):
        if method == "gmm":
            scores[k] = mixture_bic(X, k, seed)[0]
        else:
            scores[k] = silhouette(X, build_clusterer(method, k, seed).fit_predict(X), seed)
    if method == "gmm":
        return min(scores, key=scores.get), scores, "bic"
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    return (max(finite, key=finite.get) if finite else 2), scores, "silhouette"


def fit_clusters(method: str, k: int | str, X: np.ndarray, seed: int, k_max: int = 10,
                 min_cluster_size: int = 5) -> tuple[dict[str, Any], np.ndarray, dict]:
    """Fit the clusterer on the training rows.

    Returns:
        The estimators to save (``clusterer``, and ``assigner`` for methods without predict), the
        training rows' cluster ids, and what was chosen (``k``, the k search's scores).
    """
    from sklearn.neighbors import KNeighborsClassifier

    info: dict[str, Any] = {"method": method}
    rows = fit_rows(method, X, seed)
    if method == "hdbscan":
        k = None
    elif k == "auto":
        k, info["k_scores"], info["k_criterion"] = choose_k(method, rows, k_max, seed)
    info["k_chosen"] = k
    covariance = "full"
    if method == "gmm":
        info["bic"], covariance = mixture_bic(rows, k, seed)
        info["covariance_type"] = covariance
    model = build_clusterer(method, k, seed, min_cluster_size, covariance)
    labels = np.asarray(model.fit_predict(rows))
    estimators: dict[str, Any] = {"clusterer": model}
    if method in ("agglomerative", "hdbscan"):
        estimators["assigner"] = KNeighborsClassifier(n_neighbors=min(5, len(rows))).fit(rows, labels)
        labels = estimators["assigner"].predict(X) if len(rows) != len(X) else labels
    info["clusters"] = int(len(set(labels[labels >= 0])))
    if method == "hdbscan":
        info["noise_share"] = float(np.mean(labels < 0))
    return estimators, labels, info


def fit_rows(method: str, X: np.ndarray, seed: int) -> np.ndarray:
    if method == "agglomerative" and len(X) > AGGLOMERATIVE_ROWS:
        return X[np.random.default_rng(seed).choice(len(X), AGGLOMERATIVE_ROWS, replace=False)]
    return X


def assign_clusters(estimators: dict[str, Any], X: np.ndarray) -> np.ndarray:
    model = estimators.get("assigner") or estimators["clusterer"]
    return np.asarray(model.predict(X))


def cluster_metrics(X: np.ndarray, labels: np.ndarray, seed: int, truth=None) -> dict[str, float]:
    """Silhouette, Davies-Bouldin, Calinski-Harabasz; with labels given for evaluation, adjusted
    Rand and normalised mutual information."""
    from sklearn import metrics

    keep = labels >= 0
    found = len(set(labels[keep]))
    out = {"clusters": found, "silhouette": silhouette(X, labels, seed)}
    if 2 <= found < keep.sum():
        out["davies_bouldin"] = float(metrics.davies_bouldin_score(X[keep], labels[keep]))
        out["calinski_harabasz"] = float(metrics.calinski_harabasz_score(X[keep], labels[keep]))
    if truth is not None:
        out["adjusted_rand"] = float(metrics.adjusted_rand_score(truth, labels))
        out["nmi"] = float(metrics.normalized_mutual_info_score(truth, labels))
    return out


def fit_isolation_forest(X: np.ndarray, seed: int) -> tuple[Any, np.ndarray]:
    """An Isolation Forest and the training rows' anomaly scores (higher: more anomalous)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(X)
    return forest, -forest.score_samples(X)


def anomaly_truth(values, label=None) -> np.ndarray:
    """Labels given for evaluation as 0/1: ``label`` (as given or as text), else True / 1,
    'anomaly' / 'outlier' / 'yes', else the rarer value."""
    import pandas as pd

    series = pd.Series(values)
    if label is not None:
        return ((series == label) | (series.astype(str) == str(label))).astype(int).to_numpy()
    if series.dtype == bool or set(series.dropna().unique()) <= {0, 1}:
        return series.astype(int).to_numpy()
    words = series.astype(str).str.lower()
    named = words.isin(["anomaly", "anomalous", "outlier", "fraud", "yes", "true"])
    if named.any():
        return named.astype(int).to_numpy()
    rare = series.value_counts().idxmin()
    return (series == rare).astype(int).to_numpy()


def anomaly_metrics(scores: np.ndarray, threshold: float, truth=None, label=None) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {"flagged_share": float(np.mean(scores > threshold)), "threshold": float(threshold)}
    if truth is not None:
        target = anomaly_truth(truth, label)
        if len(set(target)) == 2:
            out["roc_auc"] = float(roc_auc_score(target, scores))
            out["average_precision"] = float(average_precision_score(target, scores))
    return out
