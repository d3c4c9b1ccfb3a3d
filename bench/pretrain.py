"""Self-supervised pretraining (issue 18): the shipped example (400 labelled patients, 24,000
unlabelled) with and without ``pretrain``, over several seeds (each seed: another split and
initialisation). Prints the test ROC AUC and log loss of each, and the mean difference.

Run: python bench/pretrain.py [--seeds 5] [--objective masked_features]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import fitwell

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "patients_pretrain.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--objective", default="masked_features", choices=["masked_features", "denoising"])
    args = parser.parse_args()
    rows = {"pretrained": [], "plain": []}
    print("| seed | plain ROC AUC | pretrained ROC AUC | plain log loss | pretrained log loss |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            common = {"seed": seed, "track.runs_dir": folder, "train.progress": False, "track.report": False,
                      "data.source": str(ROOT / "examples/data/patients_labelled.csv")}
            unlabelled = str(ROOT / "examples/data/patients.parquet")
            pre = fitwell.train(str(EXAMPLE), {**common, "pretrain.objective": args.objective,
                                               "pretrain.source": unlabelled})
            plain = fitwell.train(str(EXAMPLE), {**common, "pretrain": None})
            rows["pretrained"].append(pre.metrics)
            rows["plain"].append(plain.metrics)
            print(f"| {seed} | {plain.metrics['roc_auc']:.4f} | {pre.metrics['roc_auc']:.4f} |"
                  f" {plain.metrics['log_loss']:.4f} | {pre.metrics['log_loss']:.4f} |", flush=True)
    for metric in ("roc_auc", "log_loss"):
        gain = [p[metric] - q[metric] for p, q in zip(rows["pretrained"], rows["plain"], strict=True)]
        print(f"{metric}: mean pretrained - plain {statistics.mean(gain):+.4f}"
              f" (sd {statistics.stdev(gain) if len(gain) > 1 else 0:.4f}, {len(gain)} seeds)")


if __name__ == "__main__":
    main()
