"""fitwell's training loop vs a plain PyTorch loop: same model, data, batches and validation.

Run: python bench/loop_overhead.py [--epochs 5] [--repeats 5]

Both loops shuffle with the same per-epoch permutation, take index-slice batches of the same
tensors, step the same optimizer from the same initial weights, and compute the same validation
metrics each epoch. Runs alternate, in an order rotated each repeat, and the median of each is
kept, so all see the same machine state. Prints fitwell / plain wall-time ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fitwell.data.tensors import TensorData
from fitwell.engine.loop import Trainer, epoch_seed
from fitwell.engine.losses import build_loss
from fitwell.engine.threads import thread_limit
from fitwell.evaluate.metrics import epoch_metrics, probabilities
from fitwell.models import MLP

SIZES = {
    "small": dict(features=20, hidden=[64, 64], classes=2, batch=256, rows=50_000),
    "medium": dict(features=100, hidden=[512, 512, 512], classes=10, batch=512, rows=50_000),
}


def make_data(features: int, classes: int, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=(features, classes))
    y = (x @ w + rng.gumbel(size=(rows, classes))).argmax(axis=1)
    if classes == 2:
        y = y.astype(np.int64)
    codes = np.zeros((rows, 0), dtype=np.int64)
    cut = int(rows * 0.9)
    train = TensorData.from_numpy(x[:cut], codes[:cut], y[:cut].astype(np.int64))
    val = TensorData.from_numpy(x[cut:], codes[cut:], y[cut:].astype(np.int64))
    return train, val


def plain_loop(model, loss_fn, optimizer, train, val, epochs, batch, seed, task):
    """What a careful user writes by hand: the same batches and validation, no framework."""
    n = len(train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        x, c, y = train.numeric[order], train.codes[order], train.target[order]
        total = torch.zeros(())
        for start in range(0, n, batch):
            end = min(start + batch, n)
            loss = loss_fn(model(x[start:end], c[start:end]), y[start:end])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * (end - start)
        _ = float(total) / n
        model.eval()
        with torch.inference_mode():
            out = model(val.numeric, val.codes).float()
            _ = float(loss_fn(out, val.target))
        epoch_metrics(task, val.target.numpy(), probabilities(task, out.numpy()))


def fitwell_loop(model, loss_fn, optimizer, train, val, epochs, batch, seed, task, callbacks):
    from lightning_fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    trainer = Trainer(model, loss_fn, optimizer, task=task, epochs=epochs, batch_size=batch,
                      seed=seed, callbacks=callbacks, fabric=fabric)
    trainer.fit(train, val)


def default_callbacks(folder: Path):
    """Exactly the callbacks ``fitwell train`` uses by default (progress to a throw-away console)."""
    from rich.console import Console

    from fitwell.config import load_config
    from fitwell.engine.build import build_callbacks
    from fitwell.track.loggers import build_trackers

    config = load_config({"train": {"early_stopping": {"patience": 1000}}})
    quiet = Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115
    return build_callbacks(config, folder, build_trackers(config.track, folder), quiet)


def fitwell_threads(model, batch: int, features: int) -> int:
    """The thread count ``fitwell train`` picks for this model (fitwell.engine.threads)."""
    from fitwell.engine.threads import choose_threads, forward_macs

    macs = forward_macs(model, torch.zeros(1, features), torch.zeros(1, 0, dtype=torch.long))
    return choose_threads("auto", macs * batch)[0]


def measure(size: str, epochs: int, repeats: int, rule: bool = False) -> dict[str, float]:
    spec = SIZES[size]
    task = "binary" if spec["classes"] == 2 else "multiclass"
    train, val = make_data(spec["features"], spec["classes"], spec["rows"])
    torch.manual_seed(0)
    out = 1 if task == "binary" else spec["classes"]
    base = MLP(spec["features"], [], out, hidden_sizes=spec["hidden"], dropout=0.0)
    times: dict[str, list[float]] = {"plain": [], "fitwell": [], "fitwell+callbacks": []}
    names = list(times)
    for repeat in range(repeats):
        for variant in names[repeat % 3:] + names[:repeat % 3]:  # rotate: no variant always first
            model = copy.deepcopy(base)
            loss_fn = build_loss("auto", task)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            threads = fitwell_threads(model, spec["batch"], spec["features"]) if rule else \
                torch.get_num_threads()  # chosen before the clock starts: a fixed cost per run
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                if variant == "plain":
                    plain_loop(model, loss_fn, optimizer, train, val, epochs, spec["batch"], 0, task)
                else:
                    callbacks = default_callbacks(Path(tmp)) if variant.endswith("callbacks") else []
                    with thread_limit(threads):
                        fitwell_loop(model, loss_fn, optimizer, train, val, epochs, spec["batch"], 0,
                                     task, callbacks)
                times[variant].append(time.perf_counter() - started)
    medians = {k: statistics.median(v) for k, v in times.items()}
    # the median of per-repeat ratios: each pair ran back to back, so slow drift cancels
    for variant in ("fitwell", "fitwell+callbacks"):
        medians[f"{variant} ratio"] = statistics.median(
            a / b for a, b in zip(times[variant], times["plain"], strict=False))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--busy", action="store_true", help="a CPU burner process on every core but one;"
                        " fitwell uses its thread rule (fitwell.engine.threads)")
    parser.add_argument("--rule", action="store_true", help="fitwell uses its thread rule on a quiet"
                        " machine too (default: the same threads as the plain loop: loop overhead only)")
    args = parser.parse_args()
    burners = start_burners() if args.busy else None
    try:
        report(args)
    finally:
        if burners is not None:
            stop_burners(*burners)


def burn(stop) -> None:
    x = 1.0
    while not stop.is_set():
        for _ in range(10_000):
            x = x * 1.0000001 + 1e-9


def start_burners():
    import multiprocessing

    stop = multiprocessing.Event()
    count = max(1, (os.cpu_count() or 1) - 1)
    procs = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    return stop, procs


def stop_burners(stop, procs) -> None:
    stop.set()
    for proc in procs:
        proc.join()


def report(args) -> None:
    rule = args.busy or args.rule
    who = "the threads its rule picks" if rule else "the same threads"
    print(f"torch {torch.__version__}, plain loop on {torch.get_num_threads()} threads (torch's default),"
          f" fitwell on {who}{', busy machine' if args.busy else ''}, epochs {args.epochs},"
          f" median of {args.repeats};"
          " ratio = median of per-repeat fitwell / plain")
    print(f"{'model':<8} {'plain s':>9} {'fitwell s':>10} {'ratio':>7} {'+callbacks s':>13} {'ratio':>7}")
    for size in args.sizes:
        t = measure(size, args.epochs, args.repeats, rule)
        print(f"{size:<8} {t['plain']:>9.3f} {t['fitwell']:>10.3f} {t['fitwell ratio']:>7.3f}"
              f" {t['fitwell+callbacks']:>13.3f} {t['fitwell+callbacks ratio']:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
