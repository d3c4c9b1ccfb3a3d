"""Cross-validated accuracy of fitwell's default MLP, its ensembles, and tree baselines.

For each dataset (scikit-learn's bundled ones plus two seeded synthetic tables, one with missing
values and categories), a k-fold split of all rows; in each fold one ``fitwell ensemble`` run
fits, on the same training rows and the same preprocessing:
  - mlp:       fitwell's default MLP (model and train sections at their defaults)
  - lightgbm:  LightGBM with its default parameters
  - hgb:       scikit-learn's HistGradientBoosting with its default parameters
and combines them by stacking, soft voting and greedy weights. "best ensemble" is, per fold, the
combination with the best validation score (never the test score). Trees read raw numbers with
NaN and category codes; the MLP reads fitwell's preprocessing.

Wall times: one fit of each member (its out-of-fold fits and refit divided by folds + 1), and the
whole ensemble run per fold (every member's OOF fits, refits, combiners, scoring).

    python bench/accuracy.py                  # every dataset, 5 folds
    python bench/accuracy.py --datasets wine --folds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from fitwell.data.sources import read_table
from fitwell.ensemble import fit_ensemble

HIGHER = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}


def synthetic_classification(seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    X, y = make_classification(2000, 20, n_informative=8, n_redundant=4, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["target"] = y
    return frame


def synthetic_mixed(seed: int = 0) -> pd.DataFrame:
    """Regression with a known answer: y = 3 x1 - 2 x2^2 + region effect + x3 * [plan == gold] + noise;
    10% of numbers missing at random, an 8-level and a 40-level category."""
    rng = np.random.default_rng(seed)
    n = 2000
    x1, x2, x3 = rng.normal(size=(3, n))
    region = rng.choice([f"r{i}" for i in range(40)], size=n)
    plan = rng.choice(["bronze", "silver", "gold", "basic", "pro", "team", "edu", "trial"], size=n)
    effect = {f"r{i}": rng.normal() for i in range(40)}
    y = 3 * x1 - 2 * x2**2 + np.array([effect[r] for r in region]) + x3 * (plan == "gold") * 2
    y = y + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "region": region, "plan": plan, "target": y})
    for column in ("x1", "x2", "x3"):
        frame.loc[rng.random(n) < 0.1, column] = np.nan
    return frame


DATASETS = {
    "iris": lambda: read_table("sklearn:iris"),
    "wine": lambda: read_table("sklearn:wine"),
    "breast_cancer": lambda: read_table("sklearn:breast_cancer"),
    "digits": lambda: read_table("sklearn:digits"),
    "diabetes": lambda: read_table("sklearn:diabetes"),
    "synthetic_classification": synthetic_classification,
    "synthetic_mixed_regression": synthetic_mixed,
}

CONFIG = {
    "seed": 0,
    "data": {"target": "target"},
    # split.test is replaced by the outer fold; train:val keep the default 70:15 ratio
    "train": {"progress": False},
    "ensemble": {"method": "stacking", "members": [
        {"name": "mlp"}, {"name": "lightgbm", "kind": "lightgbm"},
        {"name": "hgb", "kind": "hist_gradient_boosting"}]},
}


def run(name: str, folds: int, runs_dir: str) -> dict:
    frame = DATASETS[name]()
    rows = []
    for fold in range(folds):
        config = {**CONFIG, "track": {"runs_dir": runs_dir, "name": f"{name}-{fold}", "overwrite": True}}
        started = time.perf_counter()
        result = fit_ensemble(config, data=frame, cv=(folds, fold, 0))
        wall = time.perf_counter() - started
        summary = result.summary
        task = summary["task"]
        metric = HIGHER[task]
        row = {"task": task, "metric": metric, "ensemble_seconds": wall}
        for member, info in summary["members"].items():
            row[member] = info["test"][metric]
            row[f"{member}_seconds"] = info["fit_seconds"] / (5 + 1)
        for method, info in summary["methods"].items():
            row[method] = info["test"][metric]
        combos = ("stacking", "voting", "greedy")
        chosen = max(combos, key=lambda m: summary["methods"][m]["validation"][metric])
        row["best_ensemble"] = summary["methods"][chosen]["test"][metric]
        row["best_ensemble_method"] = chosen
        rows.append(row)
    table = pd.DataFrame(rows)
    out = {"dataset": name, "task": rows[0]["task"], "metric": rows[0]["metric"], "rows": len(frame)}
    for column in ("mlp", "lightgbm", "hgb", "stacking", "voting", "greedy", "best_ensemble"):
        out[column] = f"{table[column].mean():.4f} ± {table[column].std(ddof=1):.4f}"
    for column in ("mlp_seconds", "lightgbm_seconds", "hgb_seconds", "ensemble_seconds"):
        out[column] = round(float(table[column].mean()), 2)
    out["best_methods"] = ",".join(table["best_ensemble_method"])
    return out


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for name in args.datasets:
            started = time.perf_counter()
            results.append(run(name, args.folds, runs_dir))
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    table = pd.DataFrame(results)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        seconds = [c for c in table.columns if c.endswith("_seconds")]
        print(table.drop(columns=seconds).to_string(index=False))
        print()
        print(table[["dataset"] + seconds].to_string(index=False))
    print(table.to_markdown(index=False) if _has_tabulate() else "")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
