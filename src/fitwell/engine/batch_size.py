"""``train.batch_size: auto``: the largest batch that fits an accelerator's memory, or on a CPU
the batch with the best samples per second whose activation memory stays under a cap."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from fitwell.data.tensors import TensorData


@dataclass
class BatchSizeResult:
    batch_size: int
    tried: dict[int, dict] = field(default_factory=dict)  # size -> measurements
    reason: str = ""


def activation_bytes(model: nn.Module, loss_fn: nn.Module, batch: tuple) -> int:
    """Bytes of tensors autograd saves for backward in one step: the memory a batch costs."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(batch[0], batch[1], **(batch[3] if len(batch) > 3 else {})), batch[2])
    loss.backward()
    return total


def candidates(n: int, smallest: int = 16, largest: int = 8192) -> list[int]:
    sizes, size = [], smallest
    while size <= min(n, largest):
        sizes.append(size)
        size *= 2
    return sizes or [max(1, n)]


def find_batch_size(model: nn.Module, loss_fn: nn.Module, build_optimizer, data: TensorData,
                    device: torch.device, memory_cap_gib: float = 2.0,
                    seconds_per_size: float = 0.25) -> BatchSizeResult:
    """Search batch sizes on a copy of ``model``.

    On CUDA: double until a step runs out of memory; keep the largest that ran.
    On a CPU: skip sizes whose activation memory exceeds ``memory_cap_gib``; time the rest and
    keep the best samples per second.
    """
    device = torch.device(device)
    result = BatchSizeResult(batch_size=candidates(len(data))[0])
    for size in candidates(len(data)):
        probe = copy.deepcopy(model).to(device).train()
        optimizer = build_optimizer(probe)
        rows = torch.arange(size)
        batch = (data.numeric[rows].to(device), data.codes[rows].to(device), data.target[rows].to(device),
                 {k: v[rows].to(device) for k, v in data.inputs.items()})
        try:
            memory = activation_bytes(probe, loss_fn, batch)
            if device.type == "cpu" and memory > memory_cap_gib * 2**30:
                result.tried[size] = {"activation_bytes": memory, "skipped": "over the memory cap"}
                break
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds_per_size or steps < 3:
                loss = loss_fn(probe(batch[0], batch[1], **batch[3]), batch[2])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            speed = steps * size / (time.perf_counter() - started)
        except torch.OutOfMemoryError:
            result.tried[size] = {"skipped": "out of memory"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        result.tried[size] = {"activation_bytes": memory, "samples_per_second": speed}
    ran = {s: m for s, m in result.tried.items() if "samples_per_second" in m}
    if not ran:
        return result
    if device.type == "cuda":
        result.batch_size = max(ran)
        result.reason = f"largest batch that fit in GPU memory (of {sorted(result.tried)})"
    else:
        result.batch_size = max(ran, key=lambda s: ran[s]["samples_per_second"])
        result.reason = (f"best samples/second on the CPU under a {memory_cap_gib:g} GiB activation cap"
                         f" ({ran[result.batch_size]['samples_per_second']:.0f} rows/s)")
    return result
