"""What differential privacy costs and buys: epoch time and memory, test metric, leakage.

Run: python bench/privacy.py [--part cost|utility|all] [--rows 20000] [--repeats 3]

cost     DP-SGD epoch time / non-private epoch time of fitwell's Trainer on
         bench/loop_overhead.py's small and medium MLPs (same data, same initial weights, runs
         alternated, medians; an epoch's time is that of epochs 2 and 3 of a 3-epoch fit, its
         callbacks included -- the accountant's epsilon every epoch, not its one-time curve of
         24 ms a run), with fitwell's one-pass clipping (``ghost``, the default for these
         networks), Opacus' ghost clipping and Opacus' per-sample gradients; peak memory
         (VmHWM) of one epoch of each in a fresh process, minus the non-private one's.
utility  examples/patients_private.yaml (24,000 rows) without privacy, with DP-SGD at epsilon 1, 3
         and 8 and with DP-FTRL and BLT (bound 5) at 3 and 8:
         test ROC AUC and the loss attack's ROC AUC and empirical epsilon bound from
         ``fitwell.privacy_audit``; plus a deliberately overfit non-private model (10% of the rows
         for training, a 512x512 MLP, 150 epochs) to show what the attack finds when there is a leak.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_overhead import SIZES, make_data  # noqa: E402

from fitwell.engine.callbacks import Callback  # noqa: E402
from fitwell.engine.loop import Trainer  # noqa: E402
from fitwell.engine.losses import build_loss  # noqa: E402
from fitwell.engine.threads import thread_limit  # noqa: E402
from fitwell.models import MLP  # noqa: E402
from fitwell.privacy.dpsgd import PrivacyPlan, PrivateTraining  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "ghost", "opacus_ghost", "per_sample")
EPOCHS = 3  # the time of epochs 2 and 3: steady state, after a run's one-time costs


class Clock(Callback):
    """When each epoch ended, all its callbacks (the accountant's epsilon too) included."""

    order = 999

    def __init__(self):
        self.ends: list[float] = []

    def on_epoch_end(self, trainer, state) -> None:
        self.ends.append(time.perf_counter())


def one_epoch(size: str, variant: str, rows: int, base=None, data=None) -> float:
    spec = SIZES[size]
    train, val = data or make_data(spec["features"], spec["classes"], rows)
    task = "binary" if spec["classes"] == 2 else "multiclass"
    out = 1 if task == "binary" else spec["classes"]
    model = copy.deepcopy(base) if base is not None else MLP(spec["features"], [], out,
                                                             hidden_sizes=spec["hidden"], dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    privacy = None
    if variant != "plain":
        plan = PrivacyPlan(epsilon=3.0, delta=1e-6, noise_multiplier=1.0, max_grad_norm=1.0,
                           sample_rate=spec["batch"] / len(train), expected_batch_size=spec["batch"],
                           steps=10**9, accountant="rdp", clipping=variant)
        privacy = PrivateTraining(plan, seed=0)
    clock = Clock()
    trainer = Trainer(model, build_loss("auto", task), optimizer, task=task, epochs=EPOCHS,
                      batch_size=spec["batch"], seed=0, callbacks=[clock, *([privacy] if privacy else [])],
                      privacy=privacy)
    trainer.fit(train, None)
    return statistics.median(b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False))


def cost(rows: int, repeats: int) -> None:
    print(f"DP-SGD cost per epoch ({rows} rows; ratio to the non-private epoch; medians of {repeats})")
    print(f"{'model':8} {'variant':11} {'seconds':>8} {'ratio':>6} {'peak MB':>8} {'+MB':>6}")
    for size in SIZES:
        spec = SIZES[size]
        data = make_data(spec["features"], spec["classes"], rows)
        out = 1 if spec["classes"] == 2 else spec["classes"]
        torch.manual_seed(0)
        base = MLP(spec["features"], [], out, hidden_sizes=spec["hidden"], dropout=0.0)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        with thread_limit(1 if size == "small" else 2):
            for r in range(repeats):
                for variant in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
                    times[variant].append(one_epoch(size, variant, rows, base, data))
        peaks = {v: peak_mb(size, v, rows) for v in VARIANTS}
        plain = statistics.median(times["plain"])
        for variant in VARIANTS:
            seconds = statistics.median(times[variant])
            print(f"{size:8} {variant:11} {seconds:8.3f} {seconds / plain:6.2f} {peaks[variant]:8.0f}"
                  f" {peaks[variant] - peaks['plain']:+6.0f}")


def peak_mb(size: str, variant: str, rows: int) -> float:
    """Peak RSS (VmHWM: reset by exec, unlike ru_maxrss) of a fresh process that trains one epoch."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r});"
            f" from privacy import one_epoch; one_epoch({size!r}, {variant!r}, {rows});"
            " print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def utility(repeats: int) -> None:
    import fitwell

    config = ROOT / "examples" / "patients_private.yaml"
    print(f"patients (24,000 rows), {repeats} draws of the noise (seeds 0..{repeats - 1}; the preprocessing's"
          " OpenDP noise is fresh each time): test ROC AUC mean [min, max], the loss attack's ROC AUC and"
          " empirical epsilon bound (largest of the draws)")
    print(f"{'run':16} {'test AUC':>24} {'epsilon':>8} {'attack AUC':>11} {'eps >=':>7} {'s/run':>6}")
    with tempfile.TemporaryDirectory() as folder:
        runs = {"non-private": {"privacy": None},
                **{f"epsilon {e:g}": {"privacy.epsilon": e} for e in (1, 3, 8)},
                **{f"{m}, eps {e:g}": {"privacy.epsilon": e, "privacy.mechanism": m,
                                       "privacy.max_grad_norm": 5.0}
                   for m in ("dp-ftrl", "blt") for e in (3, 8)},
                "overfit, no DP": {"privacy": None, "split.train": 0.1, "split.val": 0.1, "split.test": 0.8,
                                   "model.hidden_sizes": [512, 512], "train.epochs": 150,
                                   "train.early_stopping.enabled": False,
                                   "train.batch_size": 64, "train.lr": 0.003}}
        for name, overrides in runs.items():
            scores, attacks, bounds, spent, started = [], [], [], None, time.perf_counter()
            for seed in range(repeats if name != "overfit, no DP" else 1):
                run = fitwell.train(config, {"track.runs_dir": folder, "track.report": False, "seed": seed,
                                             "train.progress": False, **overrides})
                audit = fitwell.privacy_audit(run.path, reference=False)
                scores.append(run.metrics["roc_auc"])
                attacks.append(audit["attacks"]["loss"]["roc_auc"])
                bounds.append(audit["epsilon_lower_bounds"]["loss"])
                spent = (run.summary.get("privacy") or {}).get("epsilon")
            seconds = (time.perf_counter() - started) / len(scores)
            band = f"{statistics.mean(scores):.4f} [{min(scores):.4f}, {max(scores):.4f}]"
            print(f"{name:16} {band:>24} {spent if spent else '-':>8} {max(attacks):11.4f} {max(bounds):7.2f}"
                  f" {seconds:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("cost", "utility", "all"), default="all")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats; draws of the utility runs")
    args = parser.parse_args()
    if args.part in ("cost", "all"):
        cost(args.rows, args.repeats)
    if args.part in ("utility", "all"):
        utility(args.repeats)


if __name__ == "__main__":
    main()
