"""Data-parallel training on CPU processes: fitwell's loop on 2 processes vs a plain PyTorch DDP
loop with the same batches (same process, interleaved), and vs one process with 2 threads.

Run: python bench/distributed.py [--size small] [--epochs 2] [--repeats 5] [--strategy ddp|fsdp]

Each of the 2 processes (1 thread each, gloo) runs both loops alternately from the same initial
weights on the same rows: the plain loop takes its rank's share of every global batch of the same
seeded permutation, scales its loss the same way and steps a DistributedDataParallel model -- what
a careful user writes by hand. The single-process run (2 threads) trains the same model with the
same global batch and seed; its per-epoch training losses must agree with the 2-process ones.
With ``--strategy fsdp`` both loops shard the model with FSDP2 instead (the plain loop calls
``fully_shard`` on each linear layer and the root, as the PyTorch tutorial does); fitwell's also
gathers the full weights and optimizer state to rank 0 at each epoch's end (its checkpoints).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_overhead import SIZES, make_data  # noqa: E402

from fitwell.engine.distributed import World, launch  # noqa: E402
from fitwell.engine.loop import Trainer, epoch_seed  # noqa: E402
from fitwell.engine.losses import build_loss  # noqa: E402
from fitwell.models import MLP  # noqa: E402


def build(spec: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(spec["features"], [], spec["classes"] if spec["classes"] > 2 else 1,
                hidden_sizes=spec["hidden"], dropout=0.0, batch_norm=False)
    task = "binary" if spec["classes"] == 2 else "multiclass"
    return model, build_loss("auto", task), task


def plain_ddp_epoch(model, loss_fn, optimizer, train, batch, seed, epoch, world: World) -> float:
    """One epoch of a hand-written DDP loop over this rank's share of every global batch."""
    import torch.distributed as dist

    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    rows, bounds = world.epoch_rows(order, len(train), batch)
    numeric, codes, target = train.numeric[rows], train.codes[rows], train.target[rows]
    total = torch.zeros((), dtype=torch.float64)
    model.train()
    for start, end, size in bounds:
        loss = loss_fn(model(numeric[start:end], codes[start:end]), target[start:end])
        (loss * ((end - start) * world.size / size)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.detach() * (end - start)
    dist.all_reduce(total)
    return float(total) / world.stop(len(train), batch)


def plain_model(model, strategy: str):
    """What a user hands the plain loop: a DDP module, or the model sharded with FSDP2."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def on_rank(size: str, epochs: int, repeats: int, strategy: str = "ddp") -> dict:
    """Both loops on this rank, alternating; returns seconds and losses."""
    from lightning_fabric import Fabric

    torch.set_num_threads(1)
    fabric = Fabric(accelerator="cpu", devices=int(os.environ["LOCAL_WORLD_SIZE"]), strategy="ddp")
    fabric.launch()
    spec = SIZES[size]
    train, val = make_data(spec["features"], spec["classes"], spec["rows"])
    base, loss_fn, task = build(spec)
    world = World.of(fabric, 0)
    times = {"fitwell": [], "plain": []}
    losses = {}
    for repeat in range(repeats):
        for kind in (("fitwell", "plain") if repeat % 2 == 0 else ("plain", "fitwell")):
            model = copy.deepcopy(base)
            started = time.perf_counter()
            if kind == "fitwell":
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                trainer = Trainer(model, loss_fn, optimizer, task=task, epochs=epochs,
                                  batch_size=spec["batch"], fabric=fabric, shard=strategy == "fsdp")
                state = trainer.fit(train)
                losses[kind] = [row["train_loss"] for row in state.history]
            else:
                wrapped = plain_model(model, strategy)
                optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
                losses[kind] = [plain_ddp_epoch(wrapped, loss_fn, optimizer, train, spec["batch"], 0, e,
                                                world) for e in range(epochs)]
            times[kind].append(time.perf_counter() - started)
    return {"times": times, "losses": losses, "rows": len(train) * epochs}


def one_process(size: str, epochs: int, threads: int) -> dict:
    spec = SIZES[size]
    train, _ = make_data(spec["features"], spec["classes"], spec["rows"])
    model, loss_fn, task = build(spec)
    torch.set_num_threads(threads)
    trainer = Trainer(model, loss_fn, torch.optim.Adam(model.parameters(), lr=1e-3), task=task, epochs=epochs,
                      batch_size=spec["batch"])
    started = time.perf_counter()
    state = trainer.fit(train)
    return {"seconds": time.perf_counter() - started, "losses": [row["train_loss"] for row in state.history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=list(SIZES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    args = parser.parse_args()
    ranks = launch(on_rank, (args.size, args.epochs, args.repeats, args.strategy), 2, threads=1)
    single = one_process(args.size, args.epochs, 2)
    fitwell_s = statistics.median(ranks["times"]["fitwell"])
    plain_s = statistics.median(ranks["times"]["plain"])
    times = ranks["times"]
    spread = [round(f / p, 3) for f, p in zip(times["fitwell"], times["plain"], strict=True)]
    batch = SIZES[args.size]["batch"]
    name = args.strategy.upper()
    print(f"size {args.size}, {args.epochs} epochs, batch {batch}, 2 processes x 1 thread, {name}")
    print(f"fitwell {name} / plain {name} loop: {fitwell_s / plain_s:.3f} (per repeat: {spread})")
    print(f"rows/s: fitwell {name} {ranks['rows'] / fitwell_s:,.0f},"
          f" plain {name} {ranks['rows'] / plain_s:,.0f},"
          f" one process x 2 threads {ranks['rows'] / single['seconds']:,.0f}")
    gap = max(abs(a - b) for a, b in zip(ranks["losses"]["fitwell"], single["losses"], strict=True))
    print(f"train loss per epoch, 2 processes: {[round(v, 6) for v in ranks['losses']['fitwell']]}")
    print(f"train loss per epoch, 1 process:   {[round(v, 6) for v in single['losses']]}"
          f"  (max gap {gap:.1e})")


if __name__ == "__main__":
    main()
