"""The learning-rate range test (Smith 2017; fastai's and Lightning's ``lr_find``).

Train a throw-away copy of the model for ``num_steps`` batches while the rate grows
exponentially from ``min_lr`` to ``max_lr``; stop when the smoothed loss explodes; suggest the
rate where the smoothed loss falls fastest.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fitwell.data.tensors import TensorData
from fitwell.engine.loop import epoch_seed


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed, bias-corrected
    suggestion: float

    def save(self, folder: Path, stem: str = "lr_find") -> Path:
        """Write ``<stem>.json`` and the plot ``<stem>.png``; return the plot's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(
            {"suggestion": self.suggestion, "lrs": self.lrs, "losses": self.losses}, indent=1))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggested {self.suggestion:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.legend()
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def suggest(lrs: list[float], losses: list[float], skip_start: int = 5, skip_end: int = 1) -> float:
    """The rate of steepest descent of the loss against log(rate), before the loss minimum."""
    if len(losses) < skip_start + skip_end + 3:
        return float(lrs[int(np.argmin(losses))] / 10)
    end = min(int(np.argmin(losses)) + 1, len(losses) - skip_end)
    window = np.asarray(losses[skip_start:end])
    if len(window) < 3:
        return float(lrs[int(np.argmin(losses))] / 10)
    slope = np.gradient(window, np.log(np.asarray(lrs[skip_start:end])))
    return float(lrs[skip_start + int(np.argmin(slope))])


def lr_range_test(model: nn.Module, loss_fn: nn.Module, build_optimizer, data: TensorData,
                  batch_size: int, *, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100,
                  beta: float = 0.98, diverge: float = 4.0, seed: int = 0,
                  device: torch.device | str = "cpu") -> LRFindResult:
    """Run the range test on a copy of ``model`` (the original is left untouched).

    Args:
        build_optimizer: ``f(module, lr) -> optimizer`` for the copy.
        data: training tensors (the test cycles through shuffled batches of them).

    Example:
        >>> result = lr_range_test(model, loss, lambda m, lr: torch.optim.SGD(m.parameters(), lr),
        ...                        data, 64)  # doctest: +SKIP
        >>> result.suggestion  # doctest: +SKIP
    """
    probe = copy.deepcopy(model).to(device).train()
    optimizer = build_optimizer(probe, min_lr)
    n = len(data)
    generator = torch.Generator().manual_seed(epoch_seed(seed, 2**31))  # not any epoch's shuffle
    order = torch.randperm(n, generator=generator)
    ratio = (max_lr / min_lr) ** (1 / max(1, num_steps - 1))
    lrs, losses = [], []
    average, best = 0.0, math.inf
    cursor = 0
    for step in range(num_steps):
        lr = min_lr * ratio**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        rows = order[cursor:cursor + batch_size]
        cursor += batch_size
        weight = None if data.weight is None else data.weight[rows].to(device)
        output = probe(data.numeric[rows].to(device), data.codes[rows].to(device),
                       **{k: v[rows].to(device) for k, v in data.inputs.items()})
        target = data.target[rows].to(device)
        loss = loss_fn(output, target) if weight is None else loss_fn(output, target, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if step > 5 and smoothed > diverge * best:
            break
    if not losses:
        return LRFindResult([], [], min_lr)
    return LRFindResult(lrs, losses, suggest(lrs, losses))
