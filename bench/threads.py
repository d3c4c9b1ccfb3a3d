"""Intra-op threads vs model size, on a quiet machine and with the other cores busy.

Run: python bench/threads.py [--steps 200]
     python bench/threads.py --late [--repeats 2]

For MLPs of growing width (batch 256), times one training step (forward, backward, Adam) with 1
thread and with every core, first on a quiet machine, then with a CPU burner process on every
core but one. Prints microseconds per step, the 1-thread / all-threads ratio, and the work per
step (multiply-adds x batch) at which more threads start to pay: fitwell.engine.threads uses that
crossover. A ratio above 1 means one thread is slower.

``--late``: a run that chose its threads on a quiet machine, then another process starts. A wide
MLP (32 -> 1024 -> 1024 -> 1, batch 256: above the crossover, so fitwell picks every core) trains a
fixed number of epochs through ``fitwell.engine.build.fit_arrays``: quiet; with a burner on every
core but one from 1 s after the start, the count following the free cores (fitwell's default);
and the same with the count held at its start value (before session 16). Runs alternate; prints
seconds and each one's ratio to quiet.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch
from torch import nn

WIDTHS = [32, 64, 128, 256, 512, 1024, 2048]


def burn(stop) -> None:
    x = 1.0
    while not stop.is_set():
        for _ in range(10_000):
            x = x * 1.0000001 + 1e-9


def step_time(width: int, threads: int, steps: int, batch: int = 256, features: int = 32) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, features), torch.randint(0, 2, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    for i in range(steps + 20):
        if i == 20:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1e6


def work(width: int, batch: int = 256, features: int = 32) -> int:
    return batch * (features * width + width * width + width * 2)


def table(steps: int) -> list[tuple]:
    cores = os.cpu_count() or 1
    rows = []
    for width in WIDTHS:
        one, many = step_time(width, 1, steps), step_time(width, cores, steps)
        rows.append((width, work(width), one, many))
        print(f"  width {width:5d}  work {work(width):>12,d}  1 thread {one:9.0f} us  {cores} threads"
              f" {many:9.0f} us  ratio {one / many:5.2f}", flush=True)
    return rows


def late_run(follow: bool, burner_after: float | None, rows: int = 20_000, epochs: int = 3) -> float:
    """Seconds for fit_arrays on the wide MLP, a burner starting ``burner_after`` s in (or none)."""
    import numpy as np

    import fitwell.engine.threads as threads
    from fitwell.config import load_config
    from fitwell.engine.build import fit_arrays
    from fitwell.models import MLP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 32)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    config = load_config({"train": {"epochs": epochs, "batch_size": 256, "progress": False,
                                    "early_stopping": {"enabled": False}}})
    model = MLP(32, [], 1, hidden_sizes=[1024, 1024])
    keep = threads.follows_load
    if not follow:
        threads.follows_load = lambda *args, **kwargs: False
    stop = multiprocessing.Event()
    others = max(1, (os.cpu_count() or 1) - 1)
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(others)]
    timer = None
    if burner_after is not None:
        import threading

        timer = threading.Timer(burner_after, lambda: [proc.start() for proc in burners])
        timer.start()
    started = time.perf_counter()
    try:
        fit_arrays(config, model, "binary", x, np.zeros((rows, 0), np.int64), y, num_classes=2)
        return time.perf_counter() - started
    finally:
        threads.follows_load = keep
        if timer is not None:
            timer.cancel()
        stop.set()
        for proc in burners:
            if proc.pid is not None:
                proc.join()


def late(repeats: int) -> None:
    cases = {"quiet": (True, None), "late burner, following": (True, 1.0), "late burner, held": (False, 1.0)}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (follow, after) in cases.items():
            seconds[name].append(late_run(follow, after))
            print(f"  {name:24s} {seconds[name][-1]:6.2f} s", flush=True)
    quiet = min(seconds["quiet"])
    for name, values in seconds.items():
        print(f"{name:24s} {', '.join(f'{v:.2f}' for v in values)} s  ratio to quiet"
              f" {', '.join(f'{v / quiet:.2f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--late", action="store_true", help="threads chosen quiet, then a burner starts")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.late:
        late(args.repeats)
        return
    cores = os.cpu_count() or 1
    print(f"quiet machine ({cores} cores, torch {torch.__version__}):")
    quiet = table(args.steps)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(max(1, cores - 1))]
    for proc in burners:
        proc.start()
    try:
        print(f"busy machine ({len(burners)} burner process(es)):")
        busy = table(max(20, args.steps // 4))
    finally:
        stop.set()
        for proc in burners:
            proc.join()
    crossover = next((w for w, _, one, many in quiet if one > 1.15 * many), None)
    print(f"quiet: more threads pay from about {crossover and work(crossover):,} multiply-adds per step"
          f" (width {crossover})" if crossover else "quiet: one thread was never 15% slower")
    worst = max(many / one for _, _, one, many in busy)
    print(f"busy: all threads were up to {worst:.1f}x slower than one thread")


if __name__ == "__main__":
    main()
