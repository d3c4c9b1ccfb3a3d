"""``fitwell ensemble``: fit the members, combine them, score, export one run directory.

Order of work (the split and preprocessing are a normal run's, fitted on the train split only):
1. each member's out-of-fold outputs on the train split (scikit-learn's ``cross_val_predict``);
2. each member refitted on the whole train split, then scored on validation and test;
3. optional isotonic/sigmoid calibration of a member, fitted on the validation split and applied
   to its OOF, validation and test outputs alike;
4. every combiner (stacking, voting, greedy, best) fitted on the OOF outputs and scored on
   validation; the configured one is the ensemble, scored on test once;
5. the diversity table (correlation of members' OOF errors) and everything else saved.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings

import numpy as np
import pandas as pd

from fitwell.config.load import ConfigLike
from fitwell.config.schema import RunConfig
from fitwell.data.prepare import PreparedData
from fitwell.ensemble.budget import MemberBudget
from fitwell.ensemble.combine import build_combiner, error_correlation, nested_oof_loss, selection_metric
from fitwell.ensemble.features import TreeFeatures
from fitwell.ensemble.fitting import fit_member, fit_together, side_by_side
from fitwell.ensemble.members import TREE_KINDS
from fitwell.ensemble.model import ENSEMBLE_FILE, EnsembleModel, EnsembleRun
from fitwell.ensemble.tables import (
    describe_wrapping,
    headline,
    member_table,
    oof_frame,
    save_reliability,
    show_tables,
)
from fitwell.errors import ConfigError
from fitwell.evaluate.metrics import classification_metrics, regression_metrics
from fitwell.files import write_json, write_with
from fitwell.run import (
    config_stem,
    finish_run_directory,
    guard,
    load_run_config,
    no_test_split,
    open_run,
    permutation_importance,
    start_run,
)

METHODS = ("stacking", "voting", "greedy", "best")


def _quiet() -> None:
    """LightGBM warns that a categorical_feature parameter "will be ignored"; it is honoured
    (its trees split on categories: tests/ensemble/test_members.py checks), so the warning goes."""
    warnings.filterwarnings("ignore", message="categorical_feature keyword has been found")


def out_of_fold_splitter(config: RunConfig, prepared: PreparedData, folds: int):
    """The folds of the OOF predictions: stratified for classifiers, grouped when the split is."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    method = config.split.method
    if method == "time":
        raise ConfigError("ensemble: split.method is time, but stacking and greedy weights learn from"
                          " out-of-fold predictions, which would let later rows predict earlier ones;"
                          " use method voting or best, or a random/stratified split")
    if method == "group":
        groups = prepared.frame[config.split.group_column].iloc[prepared.split.train].to_numpy()
        return GroupKFold(folds), groups
    if prepared.task != "regression":
        return StratifiedKFold(folds, shuffle=True, random_state=config.seed), None
    return KFold(folds, shuffle=True, random_state=config.seed), None


def _scores(task: str, prepared: PreparedData, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    if task == "regression":
        decode = prepared.preprocessor.decode_regression
        return regression_metrics(decode(y), decode(output))
    return classification_metrics(y, output)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_ensemble_config(config: RunConfig) -> None:
    """What an ensemble cannot do, refused before any data is read."""
    if config.ensemble is None:
        raise ConfigError("this config has no 'ensemble' section; add ensemble.members (see README,"
                          " 'Ensembles')")
    if config.train.resample is not None:
        raise ConfigError("train.resample is not applied to ensemble members (out-of-fold predictions"
                          " need the real rows); use train.class_weights=balanced, or member params such"
                          " as class_weight: balanced")
    for key in ("image", "text", "sequence", "synthetic"):
        if getattr(config.data, key) is not None:
            raise ConfigError(f"data.{key}: ensembles combine table models (their members and stackers read"
                              " the number and code blocks); train an image/text/sequence model with"
                              f" `fitwell train`, or leave data.{key} out")
    if config.train.batch_size == "auto" or config.train.lr == "auto":
        if any(m.kind == "fitwell" for m in config.ensemble.chosen()):
            raise ConfigError("ensemble members need a fixed train.batch_size and train.lr (not auto);"
                              " run fitwell lr-find once and set the value")


def fit_ensemble(config: ConfigLike, overrides=None, *, data: pd.DataFrame | None = None, console=None,
                 cv: tuple[int, int, int] | None = None, score_test: bool = True,
                 cache: dict | None = None, started_at: float | None = None) -> EnsembleRun:
    """Fit the ``ensemble`` section of a config and return the exported run.

    Args:
        config: a YAML path, dict or RunConfig with an ``ensemble`` section.
        overrides: dotted keys, as for ``fitwell.train``.
        data: a DataFrame instead of ``data.source``.
        console: a Rich console for the tables; None prints nothing.
        cv: ``(folds, fold, repeat)``: hold out that fold of all rows as the test part.
        score_test: False while tuning (the test split is never looked at).
        cache: a dict kept between calls (tuning trials): members whose spec, data and seed are
            unchanged are reused instead of refitted.
        started_at: a ``time.monotonic()`` reading ``ensemble.time_limit`` counts from; default now.

    Returns:
        The EnsembleRun: ``run.metrics`` (test), ``run.summary`` (members, methods, diversity),
        ``run.predict(frame)``.

    Raises:
        ConfigError: no ensemble section, a bad member, or a combination that cannot work.

    Example:
        >>> run = fit_ensemble("examples/breast_cancer_ensemble.yaml")  # doctest: +SKIP
        >>> run.summary["members"]["lightgbm"]["test"]["roc_auc"]  # doctest: +SKIP
    """
    resolved = load_run_config(config, overrides)
    check_ensemble_config(resolved)
    start = start_run(resolved, stem=config_stem(config, "ensemble"), data=data, console=console, cv=cv,
                      started_at=started_at)
    if resolved.ensemble.refit_on == "train_val":
        start.prepared = start.prepared.merge_validation()
    with guard(start):
        settings, sizes = start.config.ensemble, start.prepared.split.sizes()
        chosen = settings.chosen()
        if any(m.calibration != "none" for m in chosen) and sizes["val"] == 0:
            raise ConfigError("ensemble.members.*.calibration is fitted on the validation split, but"
                              " split.val is 0; give the validation split a share")
        open_run(start, audit=cv is None and score_test)
        start.say(f"{len(chosen)} members, {settings.folds}-fold out-of-fold predictions")
        start.training_started = True
        scored = score_test and sizes["test"] > 0  # split.test 0: the user scores their own test file
        fitted = fit_members(start, chosen, cv, scored, {} if cache is None else cache)
        combined = combine_members(start, fitted, scored)
        return save_ensemble(start, fitted, combined, scored, report=score_test)


def member_views(start, chosen) -> tuple[dict, TreeFeatures | None]:
    """The packed ``nn`` view of every split, and the ``tree`` view when a tree member needs it."""
    prepared = start.prepared
    tensors = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    views = {part: {"nn": np.hstack([t.numeric.numpy(), t.codes.numpy().astype(np.float32)])}
             for part, t in tensors.items()}
    tree_view = None
    if any(m.kind in TREE_KINDS for m in chosen):
        parts = {"train": prepared.split.train, "val": prepared.split.val, "test": prepared.split.test}
        tree_view = TreeFeatures(prepared.plan, start.config.data.normalize_strings)
        tree_view.fit(prepared.frame.iloc[parts["train"]])
        for part, rows in parts.items():
            views[part]["tree"] = tree_view.transform(prepared.frame.iloc[rows])
    return views, tree_view


def fit_members(start, chosen, cv, score_test: bool, cache: dict) -> dict:
    """Every member's out-of-fold, validation and test outputs (reused from ``cache`` when its
    spec, data and seed are unchanged) and its score rows."""
    config, prepared = start.config, start.prepared
    views, tree_view = member_views(start, chosen)
    y = {part: t.target.numpy() for part, t in (("train", prepared.train), ("val", prepared.val),
                                                 ("test", prepared.test))}
    weight = None if prepared.train.weight is None else prepared.train.weight.numpy()
    num_classes = 0 if prepared.task == "regression" else len(prepared.preprocessor.classes_)
    splitter, groups = out_of_fold_splitter(config, prepared, config.ensemble.folds)
    fingerprint = _key(config.model_dump(mode="json", exclude={"ensemble", "tune", "track"}), cv)
    fitted = {"members": [], "rows": {}, "outputs": {"oof": [], "val": [], "test": []}, "by_name": {},
              "y": y, "tree_view": tree_view, "names": [], "chosen": [], "skipped": []}
    budget = MemberBudget(config.ensemble.time_limit, start.started_at, config.ensemble.folds)
    together = side_by_side(config, chosen)  # workers of one queue of every fold, or 0

    def key(index: int, spec) -> str:
        return _key(fingerprint, spec.model_dump(mode="json"), index, config.ensemble.folds,
                    config.ensemble.validation_fraction, config.ensemble.final)

    with warnings.catch_warnings():
        _quiet()
        if together:  # every member's folds in one queue, under the run's deadline
            missing = [index for index, spec in enumerate(chosen) if key(index, spec) not in cache]
            results = fit_together(start, chosen, missing, views, tree_view, y, weight, num_classes, splitter,
                                   groups, budget.deadline(), together)
            cache.update({key(index, chosen[index]): result
                          for index, result in zip(missing, results, strict=True)})
        for index, spec in enumerate(chosen):
            if not together and not budget.allows(spec, start.say, len(chosen) - index):
                fitted["skipped"].append(spec.name)
                continue
            where = f"ensemble.members.{config.ensemble.members.index(spec)}"
            spec = budget.for_member(spec, len(chosen) - index)
            if key(index, spec) not in cache:
                cache[key(index, spec)] = fit_member(
                    spec, config, prepared, views, tree_view, y, weight, num_classes, splitter, groups,
                    config.seed + index, config.ensemble.validation_fraction, where,
                    budget.member_deadline(len(chosen) - index))
            budget.spent.append(cache[key(index, spec)][2])
            record_member(start, fitted, spec, cache[key(index, spec)], score_test)
    return fitted


def record_member(start, fitted: dict, spec, result: tuple, score_test: bool) -> None:
    """A fitted member's outputs and score row added to ``fitted``, and its line said."""
    prepared, y = start.prepared, fitted["y"]
    task = prepared.task
    member, outs, seconds = result
    fitted["names"].append(spec.name)
    fitted["chosen"].append(spec)
    fitted["by_name"][spec.name] = outs
    fitted["members"].append(member)
    for part in fitted["outputs"]:
        fitted["outputs"][part].append(outs[part])
    row = {"kind": spec.kind, "view": member.view, "fit_seconds": seconds,
           "oof": _scores(task, prepared, y["train"], outs["oof"])}
    if len(y["val"]):
        row["validation"] = _scores(task, prepared, y["val"], outs["val"])
    if score_test:
        row["test"] = _scores(task, prepared, y["test"], outs["test"])
    fitted["rows"][spec.name] = row
    start.say(f"member [bold]{spec.name}[/] ({spec.kind}{describe_wrapping(spec)}): fitted in"
              f" {seconds:.1f} s; out-of-fold {headline(task, row['oof'])}")


def combine_members(start, fitted: dict, score_test: bool) -> dict:
    """Every combiner fitted on the out-of-fold outputs, scored on validation (and test)."""
    settings, prepared = start.config.ensemble, start.prepared
    task, outputs, y = prepared.task, fitted["outputs"], fitted["y"]
    combiners, methods = {}, {}
    with warnings.catch_warnings():
        _quiet()
        for method in METHODS:
            combiner = build_combiner(method, outputs["oof"], y["train"], task, names=fitted["names"],
                                      voting=settings.voting, weights=settings.weights,
                                      meta_learner=settings.meta_learner, stack_on=settings.stack_on,
                                      greedy_rounds=settings.greedy_rounds, seed=start.config.seed,
                                      metric=selection_metric(task, settings.metric))
            combiners[method] = combiner
            methods[method] = {**combiner.describe()}
            if len(y["val"]):
                methods[method]["validation"] = _scores(task, prepared, y["val"],
                                                        combiner.combine(outputs["val"]))
            if score_test:
                test_output = combiner.combine(outputs["test"])
                methods[method]["test"] = _scores(task, prepared, y["test"], test_output)
    chosen = settings.method
    if chosen == "auto":
        chosen = choose_combiner(start, fitted, methods)
    return {"combiners": combiners, "methods": methods, "combiner": combiners[chosen], "chosen": chosen}


def choose_combiner(start, fitted: dict, methods: dict) -> str:
    """``ensemble.method: auto``: the method whose nested out-of-fold loss is lowest (ties go to the
    simpler one: best, then voting, greedy, stacking)."""
    settings, task = start.config.ensemble, start.prepared.task
    losses = {}
    for method in ("best", "voting", "greedy", "stacking"):
        losses[method] = nested_oof_loss(
            method, fitted["outputs"]["oof"], fitted["y"]["train"], task, seed=start.config.seed,
            names=fitted["names"], voting=settings.voting, weights=settings.weights,
            meta_learner=settings.meta_learner, stack_on=settings.stack_on,
            greedy_rounds=settings.greedy_rounds, metric=selection_metric(task, settings.metric))
        methods[method]["nested_oof_loss"] = losses[method]
    chosen = min(losses, key=lambda m: losses[m])
    metric = selection_metric(task, settings.metric)
    label = {"roc_auc": "1 - ROC AUC", "accuracy": "error rate", "mse": "MSE"}.get(metric, "log loss")
    start.say(f"combiner: {chosen} (nested out-of-fold {label}: "
              + ", ".join(f"{m} {v:.4g}" for m, v in losses.items()) + ")")
    return chosen


def ensemble_summary(start, fitted: dict, combined: dict, score_test: bool) -> dict:
    settings, task = start.config.ensemble, start.prepared.task
    names, methods, combiner = fitted["names"], combined["methods"], combined["combiner"]
    correlation = error_correlation(fitted["outputs"]["oof"], fitted["y"]["train"], task)
    summary = {"task": task, "method": combined["chosen"], "method_setting": settings.method,
               "combiner": combiner.describe(), "skipped_members": fitted["skipped"],
               "split": start.prepared.split.sizes(), "members": fitted["rows"], "methods": methods,
               "diversity": {"measure": "Pearson correlation of out-of-fold errors",
                             "members": names, "matrix": np.round(correlation, 4).tolist()}}
    if len(fitted["y"]["val"]):
        kept = methods[combined["chosen"]]["validation"]
        summary["validation"] = {f"val_{k}": v for k, v in kept.items()}
        summary["validation"]["val_loss"] = summary["validation"].get(
            "val_log_loss", summary["validation"].get("val_rmse", np.nan) ** 2)
    if score_test:
        summary["test"] = methods[combined["chosen"]]["test"]
    return summary


def save_ensemble(start, fitted: dict, combined: dict, score_test: bool, report: bool = True) -> EnsembleRun:
    """Write the model, its description, the tables, the metrics, the report and the manifest."""
    config, prepared, run_dir = start.config, start.prepared, start.run_dir
    task, names = prepared.task, fitted["names"]
    combiner, outputs, y = combined["combiner"], fitted["outputs"], fitted["y"]
    summary = ensemble_summary(start, fitted, combined, score_test)
    if score_test and task != "regression":
        save_reliability(run_dir, fitted["chosen"], fitted["rows"], outputs["test"], y["test"],
                          fitted["by_name"], combiner.combine(outputs["test"]), config.calibration.bins)
    model = EnsembleModel(task, fitted["members"], combiner, fitted["tree_view"])
    write_with(run_dir.path / ENSEMBLE_FILE, model.save)
    write_json(run_dir.path / "ensemble.json", {
        "method": combined["chosen"], "combiner": combiner.describe(),
        "classes": prepared.preprocessor.classes_,
        "members": [{"name": m.name, "kind": s.kind, "view": m.view, "calibration": s.calibration,
                     "bagging": s.bagging, "boosting": s.boosting}
                    for m, s in zip(fitted["members"], fitted["chosen"], strict=True)]})
    diversity = pd.DataFrame(summary["diversity"]["matrix"], index=names, columns=names)
    write_with(run_dir.path / "diversity.csv", lambda tmp: diversity.to_csv(tmp, float_format="%.4f"))
    oof = oof_frame(prepared, names, outputs["oof"])
    write_with(run_dir.path / "oof.csv", lambda tmp: oof.to_csv(tmp, index=False))
    table = member_table(fitted["rows"])
    write_with(run_dir.path / "members.csv", lambda tmp: table.to_csv(tmp, index=False))
    summary["duration_s"] = round(time.monotonic() - start.started_at, 3)
    write_json(run_dir.metrics, summary)
    show_tables(start.console, task, fitted["rows"], combined["methods"], diversity, combined["chosen"],
                score_test)
    run = EnsembleRun(run_dir.path, verify=False, model=model)
    if score_test:
        permutation_importance(start, run, prepared.split.test)
        test_rows = prepared.frame.iloc[prepared.split.test]
        predictions = run.predict(test_rows.drop(columns=[prepared.plan.target]))
        predictions.insert(0, "target", test_rows[prepared.plan.target].to_numpy())
        predictions.insert(0, "row", test_rows.index)
        write_with(run_dir.test_predictions, lambda tmp: predictions.to_csv(tmp, index=False))
    elif report:
        start.say(no_test_split(run_dir.path))
    if report and config.track.report:
        from fitwell.track.report import write_report

        start.say(f"report: {write_report(run_dir.path)}")
    finish_run_directory(start)
    return run
