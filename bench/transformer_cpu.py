"""The tabular transformer on a CPU: training rows per second and peak memory on a seeded
10,000 x 30 table (25 numbers, 5 categories), each variant in a fresh process.

Run: python bench/transformer_cpu.py [--epochs 3] [--variants defaults heads8 ...]

Variants are dotted overrides on top of ``model.name: tabular_transformer``; ``before`` is the
session-7 default (8 heads of width 8, dropout 0.1 on the residual branches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

VARIANTS = {
    "defaults": [],
    "before": ["model.heads=8", "model.residual_dropout=0.1"],
    "no_dropout": ["model.dropout=0", "model.attention_dropout=0"],
    "batch512": ["train.batch_size=512"],
}

CHILD = """
import json, resource, sys, time
import fitwell
config, overrides = json.loads(sys.argv[1]), sys.argv[2:]
run = fitwell.train(config, overrides)
history = [json.loads(line) for line in open(run.path / "history.jsonl")]
print(json.dumps({"seconds": [row["seconds"] for row in history], "metrics": run.metrics,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def table(path: Path, rows: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    numbers = rng.normal(size=(rows, 25))
    frame = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(25)])
    for j in range(5):
        frame[f"c{j}"] = rng.choice([f"v{k}" for k in range(8 + 4 * j)], size=rows)
    logit = numbers[:, 0] + np.sin(2 * numbers[:, 1]) + numbers[:, 2] * numbers[:, 3]
    logit = logit + (frame["c0"] == "v1") - 0.5
    frame["y"] = (logit + rng.logistic(size=rows) > 0).astype(int)
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["before", "defaults"], choices=list(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table(folder / "t.csv")
        config = {"data": {"source": str(folder / "t.csv"), "target": "y"},
                  "model": {"name": "tabular_transformer"},
                  "train": {"epochs": args.epochs, "early_stopping": {"patience": 1000}, "progress": False},
                  "track": {"runs_dir": str(folder / "runs")}}
        train_rows = 7_000  # fitwell's default split: 70% train, 15% validation, 15% test
        print(f"tabular_transformer, 10,000 x 30 table ({train_rows} training rows), {args.epochs} epochs,"
              " one fresh process per variant; rows/s = training rows / epoch seconds (validation included)")
        print(f"{'variant':<11} {'rows/s':>7} {'s/epoch':>8} {'peak MB':>8}  overrides")
        for name in args.variants:
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config), *VARIANTS[name]],
                                  capture_output=True, text=True, env=dict(os.environ), check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            per_epoch = float(np.median(result["seconds"]))
            print(f"{name:<11} {train_rows / per_epoch:>7.0f} {per_epoch:>8.2f} {result['peak_mb']:>8.0f}"
                  f"  {' '.join(VARIANTS[name]) or '(as shipped)'}", flush=True)


if __name__ == "__main__":
    main()
