"""fitwell's training loop vs a plain PyTorch loop: same model, data, batches and validation.

Run: python bench/loop_overhead.py [--epochs 2] [--repeats 11] [--sizes small medium]
                                   [--per-callback small] [--busy | --rule] [--fused] [--threads N]

Both loops shuffle with the same per-epoch permutation, take index-slice batches of the same
tensors, step the same optimizer from the same initial weights, and compute the same validation
metrics each epoch. Runs alternate, in an order rotated each repeat, so all see the same machine
state. Prints fitwell / plain wall-time ratios (the median and range of per-repeat ratios), and the
ratio of the fastest run of each: on a VM whose speed drifts by tens of percent within seconds, the
least disturbed run of each. ``--threads 1`` runs both loops on one thread (what ``fitwell train``
picks for the small model): two threads that wait for each other at every operation add the
machine's noise to both sides. ``--fused`` adds fitwell with every default callback on the
optimizer ``fitwell train`` builds (AdamW on PyTorch's fused kernel) against the plain loop on
torch's default AdamW: what a user's run costs, not the loop's overhead (the math is the same; the
kernel is not).
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


def plain_loop(model, loss_fn, optimizer, train, val, epochs, batch, seed, task, gather="epoch"):
    """What a careful user writes by hand: the same batches and validation, no framework.
    ``gather="epoch"`` permutes the tensors once an epoch and slices batches (what fitwell does);
    ``gather="batch"`` indexes ``X[perm[i:i+B]]`` for every batch (the common hand-written loop)."""
    n = len(train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        if gather == "epoch":
            x, c, y = train.numeric[order], train.codes[order], train.target[order]
        total = torch.zeros(())
        for start in range(0, n, batch):
            end = min(start + batch, n)
            if gather == "epoch":
                bx, bc, by = x[start:end], c[start:end], y[start:end]
            else:
                rows = order[start:end]
                bx, bc, by = train.numeric[rows], train.codes[rows], train.target[rows]
            loss = loss_fn(model(bx, bc), by)
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
    """fitwell's Trainer as ``fitwell train`` builds it for 32-bit CPU training: no Fabric."""
    trainer = Trainer(model, loss_fn, optimizer, task=task, epochs=epochs, batch_size=batch,
                      seed=seed, callbacks=callbacks, fabric=None)
    trainer.fit(train, val)


def default_callbacks(folder: Path, follow: int = 0):
    """Exactly the callbacks ``fitwell train`` uses by default (progress to a throw-away console)."""
    from rich.console import Console

    from fitwell.config import load_config
    from fitwell.engine.build import build_callbacks
    from fitwell.track.loggers import build_trackers

    config = load_config({"train": {"early_stopping": {"patience": 1000}}})
    quiet = Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115
    chosen = build_callbacks(config, folder, build_trackers(config.track, folder), quiet)
    if follow > 1:  # what fitwell train adds for a model above the thread crossover
        from fitwell.engine.threads import FollowFreeCores

        chosen.append(FollowFreeCores(follow))
    return chosen


def fitwell_threads(model, batch: int, features: int) -> int:
    """The thread count ``fitwell train`` picks for this model (fitwell.engine.threads)."""
    from fitwell.engine.threads import choose_threads, forward_macs

    macs = forward_macs(model, torch.zeros(1, features), torch.zeros(1, 0, dtype=torch.long))
    return choose_threads("auto", macs * batch)[0]


def variants(per_callback: bool, fused: bool = False) -> list[str]:
    names = ["plain", "plain (per-batch gather)", "fitwell", "fitwell+callbacks"]
    if fused:
        names.append("fitwell+callbacks, fused")
    if per_callback:
        names += [f"+{type(cb).__name__}" for cb in default_callbacks(Path(tempfile.mkdtemp()))]
    return names


def run_variant(variant: str, base, spec, task, train, val, epochs, threads) -> float:
    model = copy.deepcopy(base)
    loss_fn = build_loss("auto", task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=variant.endswith("fused") or None)
    follow = 0
    if variant.startswith("fitwell+callbacks"):  # above the crossover fitwell train's count follows the load
        from fitwell.engine.threads import CROSSOVER_MACS, forward_macs

        row = forward_macs(base, torch.zeros(1, spec["features"]), torch.zeros(1, 0, dtype=torch.long))
        follow = threads if row * spec["batch"] >= CROSSOVER_MACS else 0
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if variant.startswith("plain"):
            gather = "batch" if "per-batch" in variant else "epoch"
            plain_loop(model, loss_fn, optimizer, train, val, epochs, spec["batch"], 0, task, gather)
        else:
            callbacks = []
            if variant.startswith("fitwell+callbacks"):
                callbacks = default_callbacks(Path(tmp), follow)
            elif variant.startswith("+"):  # one default callback alone
                callbacks = [cb for cb in default_callbacks(Path(tmp)) if type(cb).__name__ == variant[1:]]
            with thread_limit(threads):
                fitwell_loop(model, loss_fn, optimizer, train, val, epochs, spec["batch"], 0, task,
                             callbacks)
        return time.perf_counter() - started


def measure(size: str, epochs: int, repeats: int, rule: bool = False,
            per_callback: bool = False, fused: bool = False) -> dict[str, list[float]]:
    """Seconds of every variant, per repeat; variants rotate so none is always first."""
    spec = SIZES[size]
    task = "binary" if spec["classes"] == 2 else "multiclass"
    train, val = make_data(spec["features"], spec["classes"], spec["rows"])
    torch.manual_seed(0)
    out = 1 if task == "binary" else spec["classes"]
    base = MLP(spec["features"], [], out, hidden_sizes=spec["hidden"], dropout=0.0)
    threads = fitwell_threads(base, spec["batch"], spec["features"]) if rule else \
        torch.get_num_threads()  # chosen before the clock starts: a fixed cost per run
    names = variants(per_callback, fused)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for variant in names[shift:] + names[:shift]:
            times[variant].append(run_variant(variant, base, spec, task, train, val, epochs, threads))
    return times


HOOKS = ("on_fit_start", "on_epoch_start", "on_batch_start", "on_batch_end", "on_before_optimizer_step",
         "on_validation_end", "on_epoch_end", "on_fit_end")


def hook_seconds(size: str, epochs: int, threads: int) -> dict[str, float]:
    """One run with every default callback, each callback's hooks timed where the loop calls them
    (in-hook time only: a checkpoint written on a worker thread shows as the snapshot it takes)."""
    spec = SIZES[size]
    task = "binary" if spec["classes"] == 2 else "multiclass"
    train, val = make_data(spec["features"], spec["classes"], spec["rows"])
    torch.manual_seed(0)
    model = MLP(spec["features"], [], 1 if task == "binary" else spec["classes"],
                hidden_sizes=spec["hidden"], dropout=0.0)
    spent: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = default_callbacks(Path(tmp))
        for cb in callbacks:
            name = type(cb).__name__
            spent[name] = 0.0
            for hook in HOOKS:
                if cb.uses_hook(hook) or not hook.startswith("on_b"):
                    setattr(cb, hook, timed(getattr(cb, hook), name, spent))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with thread_limit(threads):
            fitwell_loop(model, build_loss("auto", task), optimizer, train, val, epochs, spec["batch"], 0,
                         task, callbacks)
    return spent


def timed(method, name: str, spent: dict[str, float]):
    def call(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
    return call


def ratios(times: dict[str, list[float]], of: str, to: str) -> list[float]:
    """Per-repeat ratios: each pair ran in the same rotation, so slow drift cancels."""
    return [a / b for a, b in zip(times[of], times[to], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--per-callback", nargs="*", default=["small"], metavar="SIZE",
                        help="sizes to time each default callback alone on (default: small)")
    parser.add_argument("--busy", action="store_true", help="a CPU burner process on every core but one;"
                        " fitwell uses its thread rule (fitwell.engine.threads)")
    parser.add_argument("--rule", action="store_true", help="fitwell uses its thread rule on a quiet"
                        " machine too (default: the same threads as the plain loop: loop overhead only)")
    parser.add_argument("--fused", action="store_true", help="add fitwell with its default optimizer (fused"
                        " AdamW) against the plain loop on torch's default AdamW")
    parser.add_argument("--threads", type=int, default=0, help="both loops on this many threads"
                        " (default: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def report(args) -> None:
    rule = args.busy or args.rule
    who = "the threads its rule picks" if rule else "the same threads"
    chosen = "--threads" if args.threads else "torch's default"
    print(f"torch {torch.__version__}, plain loop on {torch.get_num_threads()} threads ({chosen}),"
          f" fitwell on {who}{', busy machine' if args.busy else ''}, epochs {args.epochs},"
          f" {args.repeats} repeats; ratios: median [min-max] of per-repeat ratios; best: the fastest"
          " run of each (timeit's estimate where the machine only ever slows a run down)")
    print(f"{'model':<8} {'plain s':>7} {'fitwell/plain':>21} {'+callbacks/plain':>21}"
          f" {'/plain per-batch gather':>24} {'best +callbacks/plain':>22}")
    for size in args.sizes:
        times = measure(size, args.epochs, args.repeats, rule, per_callback=size in args.per_callback,
                        fused=args.fused)
        print(f"{size:<8} {statistics.median(times['plain']):>7.3f}"
              f" {spread(ratios(times, 'fitwell', 'plain')):>21}"
              f" {spread(ratios(times, 'fitwell+callbacks', 'plain')):>21}"
              f" {spread(ratios(times, 'fitwell+callbacks', 'plain (per-batch gather)')):>24}"
              f" {min(times['fitwell+callbacks']) / min(times['plain']):>22.3f}", flush=True)
        if args.fused:
            ours = "fitwell+callbacks, fused"
            print(f"  {size}: fitwell+callbacks on fused AdamW / plain on torch's default AdamW:"
                  f" {spread(ratios(times, ours, 'plain'))}; / plain per-batch gather:"
                  f" {spread(ratios(times, ours, 'plain (per-batch gather)'))}", flush=True)
        alone = [name for name in times if name.startswith("+")]
        if alone:
            steps = args.epochs * -(-int(SIZES[size]["rows"] * 0.9) // SIZES[size]["batch"])
            base = statistics.median(times["fitwell"])
            print(f"  {size}: each default callback alone vs fitwell without callbacks"
                  f" ({steps} steps, {args.epochs} validations)")
            for name in alone:  # the median ratio is robust to a repeat the machine slowed down
                cost = (statistics.median(ratios(times, name, "fitwell")) - 1) * base / steps * 1e6
                print(f"    {name[1:]:<22} ratio {spread(ratios(times, name, 'fitwell'))}"
                      f"  {cost:+6.1f} us/step", flush=True)
            spent = hook_seconds(size, args.epochs, torch.get_num_threads())
            print(f"  {size}: time inside each callback's hooks, one run with all of them"
                  f" (the loop's own time per step: {base / steps * 1e6:.0f} us)")
            for name, seconds in spent.items():
                print(f"    {name:<22} {seconds * 1e3:7.2f} ms  = {seconds / steps * 1e6:5.1f} us/step"
                      f"  {seconds / base:6.2%} of the loop", flush=True)


if __name__ == "__main__":
    main()
