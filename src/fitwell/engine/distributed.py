"""Training on several processes: Lightning Fabric's DDP inside processes that a launcher started
(torchrun, SLURM's srun, or TorchElastic's ``elastic_launch`` when fitwell starts them itself).

Data parallel over the index-slice design: every process holds the same tensors and draws the same
seeded epoch permutation; each global batch of ``train.batch_size`` rows is cut into one contiguous
share per rank, and each rank's loss is scaled by ``share * world / batch`` so that DDP's gradient
average is the gradient of the mean over the whole batch -- the update a single process would make.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ELASTIC_KEYS = ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE")


def launched_processes() -> tuple[int, int] | None:
    """``(processes per node, nodes)`` when a launcher started this process as one of several
    (torchrun / TorchElastic, or a SLURM job step of several tasks); None otherwise."""
    env = os.environ
    if all(key in env for key in ELASTIC_KEYS) and "WORLD_SIZE" in env:
        local, world = int(env["LOCAL_WORLD_SIZE"]), int(env["WORLD_SIZE"])
        return local, max(1, world // max(local, 1))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        nodes = int(env.get("SLURM_NNODES", "1"))
        return int(env["SLURM_NTASKS"]) // nodes, nodes
    return None


def wants_processes(train) -> int:
    """How many processes ``train.devices`` x ``train.num_nodes`` asks for."""
    return int(train.devices) * int(train.num_nodes)


def join(train) -> Any:
    """The Fabric of this process when a launcher started several (its process group is up);
    None for a run on one process."""
    launched = launched_processes()
    if launched is None or launched[0] * launched[1] == 1:
        return None
    from lightning_fabric import Fabric

    from fitwell.errors import ConfigError

    devices, nodes = launched
    for name in ("lightning_fabric", "lightning.fabric"):  # its start-up banner on every rank
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        sharded = train.strategy == "fsdp"  # Fabric starts the group; the Trainer shards (engine.sharding)
        fabric = Fabric(accelerator=train.accelerator, devices=devices, num_nodes=nodes, strategy="ddp",
                        precision="32-true" if sharded else train.precision)
    except Exception as err:  # Fabric's MisconfigurationException and ValueError
        raise ConfigError(f"train.devices / train.strategy / train.accelerator: {err}") from err
    fabric.launch()
    return fabric


@dataclass
class World:
    """This rank's view of a data-parallel run; the loop calls it where ranks must agree."""

    rank: int
    size: int
    seed: int
    device: torch.device = torch.device("cpu")  # where collectives' tensors live (NCCL: the GPU)
    outgoing: torch.Tensor | None = None  # this rank's batch loss sum, carried by the gradients' reduce
    incoming: torch.Tensor | None = None  # the whole batch's, once backward has run
    pending: Any = None  # the loss's own all-reduce, when it does not ride in the first bucket

    @classmethod
    def of(cls, fabric, seed: int) -> World | None:
        if fabric is None or fabric.world_size < 2:
            return None
        return cls(fabric.global_rank, fabric.world_size, seed, fabric.device)

    def stop(self, n: int, size: int) -> int:
        """Rows of an epoch that are trained: a last batch too small to give every rank two rows
        (batch norm needs two) is left out, as a lone last row is on one process."""
        last = n % size
        return n - last if 0 < last < 2 * self.size and n > size else n

    def epoch_rows(self, order: torch.Tensor, n: int, size: int):
        """This rank's rows of the epoch's ``order`` (its share of every global batch, in order)
        and each batch's ``(start, end, rows of the global batch)``."""
        stop = self.stop(n, size)
        pieces, bounds, at = [], [], 0
        for begin in range(0, stop, size):
            rows = min(size, stop - begin)
            low, high = begin + rows * self.rank // self.size, begin + rows * (self.rank + 1) // self.size
            pieces.append(order[low:high])
            bounds.append((at, at + high - low, rows))
            at += high - low
        return torch.cat(pieces) if pieces else order[:0], bounds

    def seed_batch(self, epoch: int, batch: int) -> None:
        """Seed this rank's RNG for one batch (dropout, augmentation) from (seed, epoch, batch,
        rank): a resumed run draws the same. Only the training device's generator (torch.manual_seed
        costs 0.1 ms a call)."""
        seed = int(np.random.SeedSequence([self.seed, epoch, batch, self.rank]).generate_state(1)[0])
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)

    def rows(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share of ``n`` rows (validation)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks of a float64 tensor on ``device`` (in place)."""
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def batch_sum(self, loss: torch.Tensor, rows: int) -> torch.Tensor:
        """The sum of row losses of the whole global batch, from this rank's mean over ``rows``
        (after backward: carried by DDP's gradient all-reduce where ``carry_loss`` set that up)."""
        if self.outgoing is not None:
            if self.pending is not None:  # the loss's own all-reduce (a large first bucket)
                self.pending.wait()
                self.pending = None
                return self.incoming[0]
            return self.incoming
        return self.sum((loss.detach().to(self.device, torch.float64) * rows).reshape(1))[0]

    def carry_loss(self, ddp) -> None:
        """Make DDP's gradient all-reduce carry each batch's loss sum too: one collective a step
        instead of two (``before_backward`` sets what it carries)."""
        self.outgoing = torch.zeros(1, device=self.device)
        ddp.register_comm_hook(self, packed_allreduce)

    def scaled(self, loss: torch.Tensor, rows: int, batch_rows: int) -> torch.Tensor:
        """This rank's mean loss over its ``rows`` scaled so that DDP's average over ranks is the
        mean over the ``batch_rows`` of the global batch; sets what the gradients' reduce carries."""
        if self.outgoing is not None:
            self.outgoing.copy_(loss.detach().reshape(1) * rows)
        return loss * (rows * self.size / batch_rows)

    def total_norms(self, norms: torch.Tensor, p: float) -> torch.Tensor:
        """Norms of whole tensors from each rank's norms of its shards (``p``-norms; inf: the max)."""
        import torch.distributed as dist

        if math.isinf(p):
            values = norms.to(self.device, torch.float64)
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
            return values.float()
        return self.sum(norms.to(self.device, torch.float64) ** p) ** (1.0 / p)

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's ``rows(n)`` share of outputs, concatenated in row order on every rank."""
        import torch.distributed as dist

        longest = -(-n // self.size)
        padded = part.new_zeros((longest, *part.shape[1:]))
        padded[:len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        sizes = [(n * (r + 1) // self.size) - (n * r // self.size) for r in range(self.size)]
        return torch.cat([piece[:rows] for piece, rows in zip(parts, sizes, strict=True)])

    def agree(self, *flags: bool) -> list[bool]:
        """Each flag true on any rank (a stop, a divergence): every rank then acts alike."""
        values = torch.tensor([float(flag) for flag in flags], dtype=torch.float64, device=self.device)
        values = self.sum(values)
        return [bool(v > 0) for v in values]


PACK_LIMIT = 65_536  # gradients in a bucket up to which copying it to append the loss is cheaper


def packed_allreduce(world, bucket):  # no annotations: DDP checks them against its own types
    """DDP's default gradient average (divide, then sum), with ``world.outgoing`` appended to the
    first bucket; its sum over ranks lands in ``world.incoming``. A first bucket of more than
    ``PACK_LIMIT`` gradients is not copied to append one number: the loss takes an all-reduce of
    its own, started beside the bucket's and waited for in ``World.batch_sum``."""
    import torch.distributed as dist

    grads = bucket.buffer().div_(world.size)
    if bucket.index() != 0:
        return dist.all_reduce(grads, async_op=True).get_future().then(lambda fut: fut.value()[0])
    if grads.numel() > PACK_LIMIT:
        world.incoming = world.outgoing.double()
        world.pending = dist.all_reduce(world.incoming, async_op=True)
        return dist.all_reduce(grads, async_op=True).get_future().then(lambda fut: fut.value()[0])
    packed = torch.cat([grads, world.outgoing.to(grads.dtype)])

    def unpack(fut):
        out = fut.value()[0]
        world.incoming = out[-1].double()
        return out[:-1]

    return dist.all_reduce(packed, async_op=True).get_future().then(unpack)


def launch(function, args: tuple, processes: int, threads: int | None = None) -> Any:
    """Run ``function(*args)`` on ``processes`` local processes under TorchElastic (what torchrun
    runs), each with its rank's environment; returns rank 0's result. ``threads``: each process's
    OMP_NUM_THREADS (default: the cores shared out). A process that fails stops the others and
    raises ``torch.distributed.elastic.multiprocessing.errors.ChildFailedError``."""
    import uuid

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from fitwell.engine.threads import available_cores

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1)
    quiet = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels, before = [log.level for log in quiet], os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads or max(1, available_cores() // processes))
    for log in quiet:  # a failed rank's own message says what went wrong
        log.setLevel(logging.CRITICAL)
    try:
        return elastic_launch(config, function)(*args)[0]
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
