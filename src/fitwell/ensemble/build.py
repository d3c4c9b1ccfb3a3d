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
from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.config.load import ConfigLike, dump_config, load_config
from fitwell.config.schema import RunConfig
from fitwell.data.prepare import PreparedData, prepare
from fitwell.ensemble.combine import build_combiner, error_correlation
from fitwell.ensemble.features import TreeFeatures
from fitwell.ensemble.members import TREE_KINDS, build_member
from fitwell.ensemble.model import ENSEMBLE_FILE, EnsembleModel, EnsembleRun, Member, normalise
from fitwell.errors import ConfigError
from fitwell.evaluate.metrics import classification_metrics, regression_metrics
from fitwell.track.finish import run_audit
from fitwell.track.run_dir import RunDir, default_run_name, environment

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


def fit_ensemble(config: ConfigLike, overrides=None, *, data: pd.DataFrame | None = None, console=None,
                 cv: tuple[int, int, int] | None = None, score_test: bool = True,
                 cache: dict | None = None) -> EnsembleRun:
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

    Returns:
        The EnsembleRun: ``run.metrics`` (test), ``run.summary`` (members, methods, diversity),
        ``run.predict(frame)``.

    Raises:
        ConfigError: no ensemble section, a bad member, or a combination that cannot work.

    Example:
        >>> run = fit_ensemble("examples/breast_cancer_ensemble.yaml")  # doctest: +SKIP
        >>> run.summary["members"]["lightgbm"]["test"]["roc_auc"]  # doctest: +SKIP
    """
    say = (lambda text: console.print(text, soft_wrap=True)) if console is not None else (lambda text: None)
    stem = Path(config).stem if isinstance(config, (str, Path)) else "ensemble"
    started = time.perf_counter()
    config = load_config(config, overrides)
    settings = config.ensemble
    if settings is None:
        raise ConfigError("this config has no 'ensemble' section; add ensemble.members (see README,"
                          " 'Ensembles')")
    from fitwell.pipeline import seed_everything

    if config.train.resample is not None:
        raise ConfigError("train.resample is not applied to ensemble members (out-of-fold predictions"
                          " need the real rows); use train.class_weights=balanced, or member params such"
                          " as class_weight: balanced")
    for key in ("image", "text", "sequence", "synthetic"):
        if getattr(config.data, key) is not None:
            raise ConfigError(f"data.{key}: ensembles combine table models (their members and stackers read"
                              " the number and code blocks); train an image/text/sequence model with"
                              f" `fitwell train`, or leave data.{key} out")
    seed_everything(config.seed)
    prepared = prepare(config, data, cv=cv)
    task = prepared.task
    config.data.task, config.data.target = task, prepared.plan.target
    name = config.track.name or default_run_name(stem)
    run_dir = RunDir.create(config.track.runs_dir, name, config.track.overwrite)
    for note in prepared.notes:
        say(f"[yellow]data:[/] {note}")
    if cv is None and score_test:
        run_audit(config, prepared, run_dir, console, say)
    sizes = prepared.split.sizes()
    chosen = settings.chosen()
    say(f"task [bold]{task}[/], {len(prepared.frame)} rows -> train {sizes['train']}, val {sizes['val']},"
        f" test {sizes['test']}; {len(chosen)} members, {settings.folds}-fold out-of-fold predictions")
    needs_val = any(m.calibration != "none" for m in chosen)
    if needs_val and sizes["val"] == 0:
        raise ConfigError("ensemble.members.*.calibration is fitted on the validation split, but split.val"
                          " is 0; give the validation split a share")

    pre = prepared.preprocessor
    parts = {"train": prepared.split.train, "val": prepared.split.val, "test": prepared.split.test}
    tensors = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    views: dict[str, dict[str, np.ndarray]] = {
        part: {"nn": np.hstack([t.numeric.numpy(), t.codes.numpy().astype(np.float32)])}
        for part, t in tensors.items()}
    tree_view = None
    if any(m.kind in TREE_KINDS for m in chosen):
        tree_view = TreeFeatures(prepared.plan, config.data.normalize_strings)
        tree_view.fit(prepared.frame.iloc[parts["train"]])
        for part, rows in parts.items():
            views[part]["tree"] = tree_view.transform(prepared.frame.iloc[rows])
    y = {part: t.target.numpy() for part, t in tensors.items()}
    weight = None if prepared.train.weight is None else prepared.train.weight.numpy()
    num_classes = 0 if task == "regression" else len(pre.classes_)
    splitter, groups = out_of_fold_splitter(config, prepared, settings.folds)
    fingerprint = _key(config.model_dump(mode="json", exclude={"ensemble", "tune", "track"}), cv)

    members, rows, outputs, cache_outputs = [], {}, {"oof": [], "val": [], "test": []}, {}
    cache = {} if cache is None else cache
    with warnings.catch_warnings():
        _quiet()
        for index, spec in enumerate(chosen):
            key = _key(fingerprint, spec.model_dump(mode="json"), index, settings.folds,
                       settings.validation_fraction)
            if key not in cache:
                cache[key] = _fit_member(spec, config, prepared, views, tree_view, y, weight, num_classes,
                                         splitter, groups, config.seed + index, settings.validation_fraction,
                                         f"ensemble.members.{config.ensemble.members.index(spec)}")
            member, outs, fit_seconds = cache[key]
            cache_outputs[spec.name] = outs
            members.append(member)
            for part in outputs:
                outputs[part].append(outs[part])
            rows[spec.name] = {"kind": spec.kind, "view": member.view, "fit_seconds": fit_seconds,
                               "oof": _scores(task, prepared, y["train"], outs["oof"])}
            if sizes["val"]:
                rows[spec.name]["validation"] = _scores(task, prepared, y["val"], outs["val"])
            if score_test:
                rows[spec.name]["test"] = _scores(task, prepared, y["test"], outs["test"])
            say(f"member [bold]{spec.name}[/] ({spec.kind}{_wrapping(spec)}): fitted in {fit_seconds:.1f} s;"
                f" out-of-fold {_headline(task, rows[spec.name]['oof'])}")

        names = [m.name for m in chosen]
        combiners, methods = {}, {}
        for method in METHODS:
            combiner = build_combiner(method, outputs["oof"], y["train"], task, names=names,
                                      voting=settings.voting, weights=settings.weights,
                                      meta_learner=settings.meta_learner, stack_on=settings.stack_on,
                                      greedy_rounds=settings.greedy_rounds, seed=config.seed)
            combiners[method] = combiner
            methods[method] = {**combiner.describe()}
            if sizes["val"]:
                methods[method]["validation"] = _scores(task, prepared, y["val"],
                                                        combiner.combine(outputs["val"]))
            if score_test:
                test_output = combiner.combine(outputs["test"])
                methods[method]["test"] = _scores(task, prepared, y["test"], test_output)

    combiner = combiners[settings.method]
    correlation = error_correlation(outputs["oof"], y["train"], task)
    diversity = pd.DataFrame(correlation, index=names, columns=names)
    model = EnsembleModel(task, members, combiner, tree_view)
    summary = {"task": task, "method": settings.method, "combiner": combiner.describe(), "split": sizes,
               "members": rows, "methods": methods,
               "diversity": {"measure": "Pearson correlation of out-of-fold errors",
                             "members": names, "matrix": np.round(correlation, 4).tolist()}}
    if sizes["val"]:
        summary["validation"] = {f"val_{k}": v for k, v in methods[settings.method]["validation"].items()}
        summary["validation"]["val_loss"] = summary["validation"].get(
            "val_log_loss", summary["validation"].get("val_rmse", np.nan) ** 2)
    if score_test:
        summary["test"] = methods[settings.method]["test"]
        if task != "regression":
            _save_reliability(run_dir, chosen, rows, outputs["test"], y["test"], cache_outputs,
                              combiner.combine(outputs["test"]), config.calibration.bins)

    run_dir.config.write_text(dump_config(config))
    run_dir.write_json(run_dir.env, environment(config.seed))
    run_dir.write_json(run_dir.data_report, prepared.summary())
    pre.save(run_dir.preprocess)
    model.save(run_dir.path / ENSEMBLE_FILE)
    run_dir.write_json(run_dir.path / "ensemble.json", {
        "method": settings.method, "combiner": combiner.describe(), "classes": pre.classes_,
        "members": [{"name": m.name, "kind": s.kind, "view": m.view, "calibration": s.calibration,
                     "bagging": s.bagging, "boosting": s.boosting}
                    for m, s in zip(members, chosen, strict=True)]})
    diversity.to_csv(run_dir.path / "diversity.csv", float_format="%.4f")
    _oof_frame(prepared, names, outputs["oof"]).to_csv(run_dir.path / "oof.csv", index=False)
    _member_table(rows).to_csv(run_dir.path / "members.csv", index=False)
    summary["duration_s"] = round(time.perf_counter() - started, 3)
    run_dir.write_json(run_dir.metrics, summary)
    _show(console, task, rows, methods, diversity, settings.method, score_test)
    run = EnsembleRun(run_dir.path)
    if score_test and config.explain.permutation:
        from fitwell.evaluate.explain import permutation_importance

        run_dir.write_json(run_dir.path / "importance.json", permutation_importance(
            run, prepared.frame.iloc[parts["test"]], config.explain.repeats, config.seed))
    if score_test:
        test_rows = prepared.frame.iloc[parts["test"]]
        predictions = run.predict(test_rows.drop(columns=[prepared.plan.target]))
        predictions.insert(0, "target", test_rows[prepared.plan.target].to_numpy())
        predictions.insert(0, "row", test_rows.index)
        predictions.to_csv(run_dir.test_predictions, index=False)
        if config.track.report:
            from fitwell.track.report import write_report

            say(f"report: {write_report(run_dir.path)}")
    return run


def _fit_member(spec, config, prepared, views, tree_view, y, weight, num_classes, splitter, groups, seed,
                validation_fraction, where):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    task = prepared.task
    pre = prepared.preprocessor
    view = "tree" if spec.kind in TREE_KINDS else "nn"
    tree_categorical = []
    if view == "tree":
        counts = [len(c) for c in tree_view.encoder_.categories_] if tree_view.encoder_ else []
        # HistGradientBoosting takes at most 255 categories per feature; more stay ordinal codes
        tree_categorical = [i for i, n in zip(tree_view.categorical_, counts, strict=True) if n < 255]
    estimator = build_member(spec, config, task, pre.num_numeric, pre.cardinalities_, num_classes,
                             tree_categorical, seed, validation_fraction, where)
    method = "predict" if task == "regression" else "predict_proba"
    params = {} if weight is None else {"sample_weight": weight}
    started = time.perf_counter()
    with _openmp_threads(spec.kind):
        oof = cross_val_predict(clone(estimator), views["train"][view], y["train"], cv=splitter,
                                groups=groups, method=method, params=params)
        fitted = clone(estimator).fit(views["train"][view], y["train"], **params)
    seconds = time.perf_counter() - started
    member = Member(spec.name, view, fitted)
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
    return member, outs, seconds


def _openmp_threads(kind: str):
    """HistGradientBoosting on one OpenMP thread when PyTorch's and scikit-learn's OpenMP runtimes
    are both loaded: with scikit-learn's loaded first, its 2-thread fits on a 2-core machine took
    1.03 s (400 rows) and 2.2 s (50,000 rows) against 0.15 s and 1.3 s on one thread
    (docs/benchmarks.md, "OpenMP")."""
    from contextlib import nullcontext

    if kind != "hist_gradient_boosting":
        return nullcontext()
    from threadpoolctl import threadpool_info, threadpool_limits

    runtimes = {info["filepath"] for info in threadpool_info() if info["internal_api"] == "openmp"}
    return threadpool_limits(1, "openmp") if len(runtimes) > 1 else nullcontext()


def _save_reliability(run_dir, chosen, rows, test_outputs, y_test, member_outputs, ensemble_output,
                      bins: int) -> None:
    """Reliability-curve data on the test split: each member (before and after its calibration)
    and the ensemble; calibrated members' test scores before calibration go to the member table."""
    from fitwell.evaluate.metrics import classification_metrics, reliability_curve

    curves = {"split": "test", "members": {}, "ensemble": reliability_curve(y_test, ensemble_output, bins)}
    for spec, output in zip(chosen, test_outputs, strict=True):
        entry = {"calibration": spec.calibration, "curve": reliability_curve(y_test, output, bins)}
        raw = member_outputs[spec.name].get("test_uncalibrated")
        if raw is not None:
            entry["uncalibrated"] = reliability_curve(y_test, raw, bins)
            rows[spec.name]["test_uncalibrated"] = classification_metrics(y_test, raw)
        curves["members"][spec.name] = entry
    run_dir.write_json(run_dir.path / "reliability.json", curves)


def _wrapping(spec) -> str:
    extra = [f"bagging x{spec.bagging}" if spec.bagging else "", f"AdaBoost x{spec.boosting}" if spec.boosting
             else "", f"{spec.calibration} calibration" if spec.calibration != "none" else ""]
    extra = [e for e in extra if e]
    return f", {', '.join(extra)}" if extra else ""


def headline_metric(task: str) -> str:
    return {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}[task]


def _headline(task: str, scores: dict) -> str:
    name = headline_metric(task)
    return f"{name} {scores[name]:.4f}"


def _oof_frame(prepared: PreparedData, names: list[str], outputs: list[np.ndarray]) -> pd.DataFrame:
    """Out-of-fold outputs per member, keyed by the row's index in the input table."""
    rows = prepared.split.train
    frame = pd.DataFrame({"row": prepared.frame.index[rows],
                          "target": prepared.frame[prepared.plan.target].iloc[rows].to_numpy()})
    pre = prepared.preprocessor
    for name, out in zip(names, outputs, strict=True):
        if prepared.task == "regression":
            frame[f"{name}_prediction"] = pre.decode_regression(out)
        else:
            for i, label in enumerate(pre.classes_):
                frame[f"{name}_proba_{label}"] = out[:, i]
    return frame


def _member_table(rows: dict) -> pd.DataFrame:
    table = []
    for name, row in rows.items():
        flat = {"member": name, "kind": row["kind"], "fit_seconds": round(row["fit_seconds"], 3)}
        for part in ("oof", "validation", "test"):
            for metric, value in row.get(part, {}).items():
                flat[f"{part}_{metric}"] = value
        table.append(flat)
    return pd.DataFrame(table)


def _show(console, task, rows, methods, diversity, chosen, score_test) -> None:
    if console is None:
        return
    from rich.table import Table

    metric = headline_metric(task)
    parts = ["oof", "validation"] + (["test"] if score_test else [])
    table = Table(title=f"members and combinations ({metric})")
    table.add_column("")
    for part in parts:
        table.add_column(part.replace("oof", "out-of-fold"), justify="right")
    for name, row in rows.items():
        table.add_row(name, *[_cell(row.get(part), metric) for part in parts])
    for method, row in methods.items():
        label = f"[bold]{method}[/] (chosen)" if method == chosen else method
        table.add_row(label, "", *[_cell(row.get(part), metric) for part in parts[1:]])
    console.print(table)
    names = list(diversity.index)
    if len(names) > 1:
        div = Table(title="diversity: correlation of out-of-fold errors (lower = more complementary)")
        div.add_column("")
        for name in names:
            div.add_column(name, justify="right")
        for name in names:
            div.add_row(name, *[f"{v:.2f}" for v in diversity.loc[name]])
        console.print(div)


def _cell(scores: dict | None, metric: str) -> str:
    return "" if not scores else f"{scores[metric]:.4f}"
