"""Fitting ensemble members: one at a time (each member's folds on the cores its library uses
well), or, for an ensemble of boosted trees only, every member's folds as one queue of one-thread
jobs (``side_by_side``; see folds.py)."""

from __future__ import annotations

import time

import numpy as np

from fitwell.config.schema import RunConfig
from fitwell.ensemble.folds import FoldJobs, bag_folds, fit_side_by_side, openmp_limit, openmp_plan
from fitwell.ensemble.members import TREE_KINDS, build_member, spread_columns
from fitwell.ensemble.model import Member, normalise


def side_by_side(config: RunConfig, chosen) -> int:
    """The workers of one queue of one-thread jobs holding every member's folds (the free cores),
    or 0 when members are fitted one at a time. A queue needs more than one member, every one a
    boosted-tree model not wrapped in bagging or AdaBoost, fold models kept (``final: bag``) and more
    than one core free; a network member keeps the one-member-at-a-time order (its fold fits use
    torch's threads and their share of the time)."""
    from fitwell.engine.threads import free_cores

    if not (config.ensemble.final == "bag" and len(chosen) > 1
            and all(spec.kind in TREE_KINDS and not spec.bagging and not spec.boosting for spec in chosen)):
        return 0
    workers = free_cores()
    return workers if workers > 1 else 0


def member_estimator(spec, config, prepared, tree_view, num_classes, seed, validation_fraction, where,
                      deadline):
    """The member's unfitted estimator and the view it reads (``tree`` or ``nn``)."""
    pre = prepared.preprocessor
    view = "tree" if spec.kind in TREE_KINDS else "nn"
    tree_categorical = []
    if view == "tree":
        counts = [len(c) for c in tree_view.encoder_.categories_] if tree_view.encoder_ else []
        # HistGradientBoosting takes at most 255 categories per feature; more stay ordinal codes there
        limit = 255 if spec.kind == "hist_gradient_boosting" else np.inf
        tree_categorical = [i for i, n in zip(tree_view.categorical_, counts, strict=True) if n < limit]
    estimator = build_member(spec, config, prepared.task, pre.num_numeric, pre.cardinalities_, num_classes,
                             tree_categorical, seed, validation_fraction, where, deadline)
    return estimator, view


def fit_together(start, chosen, indices, views, tree_view, y, weight, num_classes, splitter, groups,
                 deadline, workers: int) -> list:
    """(member, outputs, seconds) of the members at ``indices``, their folds fitted as one queue on
    ``workers`` threads."""
    config, prepared = start.config, start.prepared
    method = "predict" if prepared.task == "regression" else "predict_proba"
    params = {} if weight is None else {"sample_weight": weight}
    jobs, member_views = [], []
    for index in indices:
        spec = chosen[index]
        where = f"ensemble.members.{config.ensemble.members.index(spec)}"
        estimator, view = member_estimator(spec, config, prepared, tree_view, num_classes,
                                           config.seed + index, config.ensemble.validation_fraction, where,
                                           deadline)
        jobs.append(FoldJobs(estimator, views["train"][view], y["train"], splitter, groups, method, params,
                             num_classes))
        member_views.append(view)
    out = []
    for index, view, (oof, bag, seconds) in zip(indices, member_views, fit_side_by_side(jobs, workers),
                                                strict=True):
        member = Member(chosen[index].name, view, bag, classes=num_classes)
        out.append((member, member_outputs(chosen[index], member, prepared.task, views, y, num_classes, oof),
                    seconds))
    return out


def fit_member(spec, config, prepared, views, tree_view, y, weight, num_classes, splitter, groups, seed,
                validation_fraction, where, deadline=None):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    task = prepared.task
    estimator, view = member_estimator(spec, config, prepared, tree_view, num_classes, seed,
                                        validation_fraction, where, deadline)
    method = "predict" if task == "regression" else "predict_proba"
    params = {} if weight is None else {"sample_weight": weight}
    started = time.perf_counter()
    threads, workers = openmp_plan(spec.kind)
    with openmp_limit(threads):
        if config.ensemble.final == "bag":
            oof, fitted = bag_folds(estimator, views["train"][view], y["train"], splitter, groups, method,
                                    params, num_classes, workers=workers, openmp_threads=threads)
        else:
            oof = cross_val_predict(clone(estimator), views["train"][view], y["train"], cv=splitter,
                                    groups=groups, method=method, params=params)
            if task != "regression":  # scikit-learn's columns are the classes the training rows hold
                oof = spread_columns(oof, np.unique(y["train"]), num_classes)
            fitted = clone(estimator).fit(views["train"][view], y["train"], **params)
    seconds = time.perf_counter() - started
    member = Member(spec.name, view, fitted, classes=num_classes)
    return member, member_outputs(spec, member, task, views, y, num_classes, oof), seconds


def member_outputs(spec, member, task, views, y, num_classes, oof) -> dict:
    """A fitted member's out-of-fold, validation and test outputs (calibrated when it asks)."""
    view = member.view
    outs = {"oof": np.asarray(oof, dtype=np.float64) if task == "regression" else normalise(oof)}
    for part in ("val", "test"):
        outs[part] = member.output(task, {view: views[part][view]}) if len(y[part]) else \
            np.zeros((0,) if task == "regression" else (0, num_classes))
    if spec.calibration != "none":
        from fitwell.evaluate.calibration import fit_probability_calibrator

        member.calibrator = fit_probability_calibrator(spec.calibration, outs["val"], y["val"])
        raw_test = outs["test"]
        outs = {part: member.calibrator.predict_proba(out) if len(out) else out for part, out in outs.items()}
        outs["test_uncalibrated"] = raw_test
    return outs
