"""The fold models of bagged members (``ensemble.final: bag``), fitted one member at a time or as
one queue across several members.

A member's k fold models are independent fits. ``bag_folds`` fits one member's; ``fit_side_by_side``
puts the folds of several boosted-tree members in one queue of one-thread jobs on the free cores
(LightGBM's, XGBoost's and CatBoost's threads and HistGradientBoosting's OpenMP threads set to 1):
no core waits while one member's last fold runs alone, and the jobs never ask for more threads
than there are cores. A job's model is the one it would be fitted alone (same rows, same seed).

A member with a ``deadline`` (a ``time.monotonic()`` reading) shares it out by queue position: a
job in the i-th of r rounds of the queue (``workers`` jobs a round) may run until i/r of the way
to it, so late folds are not starved by early ones.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
from sklearn.base import clone

from fitwell.ensemble.members import FoldBag, aligned_proba


class FoldJobs:
    """One member's fold fits: a clone of ``estimator`` on each fold's other rows, predicting the
    fold's held-out rows with ``method`` (predict or predict_proba)."""

    def __init__(self, estimator, X: np.ndarray, y: np.ndarray, splitter, groups, method: str,
                 params: dict, num_classes: int):
        self.estimator, self.X, self.y, self.method = estimator, X, y, method
        self.params, self.num_classes = params, num_classes
        self.splits = list(splitter.split(X, y, groups))
        self.deadline = estimator.get_params().get("deadline")

    def fit(self, fold: int, deadline: float | None, threads: int | None):
        """(model, held-out rows, their predictions, (start, end) seconds) of fold ``fold``."""
        started = time.monotonic()
        rest, held = self.splits[fold]
        model = clone(self.estimator)
        if deadline is not None:
            model.set_params(deadline=deadline)
        if threads is not None and "threads" in model.get_params():
            model.set_params(threads=threads)
        with openmp_limit(threads):
            model.fit(self.X[rest], self.y[rest], **{k: np.asarray(v)[rest] for k, v in self.params.items()})
            predicted = getattr(model, self.method)(self.X[held])
        if self.method == "predict_proba":
            predicted = aligned_proba(model, predicted, self.num_classes)
        return model, held, predicted, (started, time.monotonic())

    def bag(self, results: list) -> tuple[np.ndarray, FoldBag, float]:
        """Out-of-fold predictions, the FoldBag of the fold models (in fold order) and the seconds
        from the first fold's start to the last one's end."""
        oof = np.zeros((len(self.y), *np.shape(results[0][2])[1:]))
        for _, held, predicted, _ in results:
            oof[held] = predicted
        seconds = max(end for *_, (_, end) in results) - min(start for *_, (start, _) in results)
        return oof, FoldBag([model for model, *_ in results], self.num_classes), seconds


def run_queue(members: list[FoldJobs], workers: int, threads: int | None) -> list[list]:
    """Every fold of every member, in member then fold order, on ``workers`` threads (each job on
    ``threads`` threads; None: as the estimator sets them); each member's results in fold order."""
    queue = [(m, fold) for m, jobs in enumerate(members) for fold in range(len(jobs.splits))]
    workers = max(1, min(workers, len(queue)))
    rounds = math.ceil(len(queue) / workers)
    started = time.monotonic()

    def run(position: int):
        m, fold = queue[position]
        jobs = members[m]
        deadline = None
        if jobs.deadline is not None:  # the i-th round of r may run until i/r of the way
            deadline = started + (jobs.deadline - started) * (position // workers + 1) / rounds
        return m, jobs.fit(fold, deadline, threads)

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(run, range(len(queue))))
    else:
        done = [run(position) for position in range(len(queue))]
    results: list[list] = [[] for _ in members]
    for m, result in done:
        results[m].append(result)
    return results


def bag_folds(estimator, X: np.ndarray, y: np.ndarray, splitter, groups, method: str, params: dict,
              num_classes: int, workers: int = 1, openmp_threads: int | None = None
              ) -> tuple[np.ndarray, FoldBag]:
    """Fit a clone on each fold's other rows: the out-of-fold predictions, and the FoldBag of the
    k fitted models (every model saw (k-1)/k of the rows; no refit). ``workers`` > 1 fits that
    many folds side by side on threads (for a one-thread estimator; each thread holds
    ``openmp_threads``, an OpenMP setting being per thread); the result is the same as one at a
    time."""
    jobs = FoldJobs(estimator, X, y, splitter, groups, method, params, num_classes)
    results, = run_queue([jobs], workers, openmp_threads if workers > 1 else None)
    oof, bag, _ = jobs.bag(results)
    return oof, bag


def fit_side_by_side(members: list[FoldJobs], workers: int) -> list[tuple[np.ndarray, FoldBag, float]]:
    """Several members' folds as one queue of one-thread jobs on ``workers`` threads: each member's
    (out-of-fold predictions, FoldBag, seconds from its first fold's start to its last's end)."""
    return [jobs.bag(results) for jobs, results in zip(members, run_queue(members, workers, 1), strict=True)]


def openmp_plan(kind: str) -> tuple[int | None, int]:
    """OpenMP threads per fit (None: no limit) and folds fitted side by side for a member:
    HistGradientBoosting on one thread when PyTorch's and scikit-learn's OpenMP runtimes are both
    loaded (2 threads were up to 7x slower then; docs/benchmarks.md, "OpenMP"), its folds side by
    side on the free cores (1.3-1.4x on 2 cores); otherwise on the free cores, one fold at a time."""
    if kind != "hist_gradient_boosting":
        return None, 1
    from threadpoolctl import threadpool_info

    from fitwell.engine.threads import free_cores

    runtimes = {info["filepath"] for info in threadpool_info() if info["internal_api"] == "openmp"}
    return (1, free_cores()) if len(runtimes) > 1 else (free_cores(), 1)


def openmp_limit(threads: int | None):
    """OpenMP held to ``threads`` in this thread (None: as it is)."""
    if threads is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, "openmp")
