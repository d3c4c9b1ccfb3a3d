"""Callbacks that add measurements to the per-epoch history: learning rates, gradient norms."""

from __future__ import annotations

import math

import torch

from fitwell.engine.callbacks.base import Callback


class LearningRateMonitor(Callback):
    """Log each parameter group's learning rate in force at the end of every epoch's last step
    (``lr``, ``lr_1``, ...), before any per-epoch schedule moves it."""

    def on_validation_end(self, trainer, state, metrics):
        rates = trainer.epoch_lrs or [group["lr"] for group in trainer.optimizer.param_groups]
        for i, rate in enumerate(rates):
            metrics["lr" if i == 0 else f"lr_{i}"] = float(rate)


class GradientNormMonitor(Callback):
    """Log the mean and max total gradient norm (before clipping) over the epoch.

    Args:
        every_n_steps: measure every n optimizer steps (a norm costs a pass over the gradients).
        norm_type: the p of the p-norm.
    """

    rank_zero_only = True  # the gradients are the same on every rank after DDP's average
    every_rank_when_sharded = True  # FSDP: each rank holds a shard of them; the norms are summed

    def __init__(self, every_n_steps: int = 1, norm_type: float = 2.0):
        self.every_n_steps, self.norm_type = every_n_steps, norm_type

    def on_fit_start(self, trainer, state):
        self._norms: list[list] = []  # each step's per-tensor norms, reduced when the epoch ends:
        # no device sync and one kernel per step (the per-tensor norms in one foreach kernel)
        self._params = list(trainer.model.parameters())  # frozen ones have no grad: skipped
        self._world = trainer.world if trainer.sharded else None

    def on_before_optimizer_step(self, trainer, state):
        if state.step % self.every_n_steps:
            return
        grads = [p.grad for p in self._params if p.grad is not None]
        if self._world is not None:  # this rank's shards (DTensors' local parts)
            grads = [g.to_local() for g in grads]
        if grads:
            self._norms.append(torch._foreach_norm(grads, self.norm_type, dtype=torch.float32))

    def _totals(self) -> torch.Tensor:
        """Each measurement's total norm (the p-norm of its per-tensor norms), in one pass."""
        flat = torch.stack([n for step in self._norms for n in step])
        sizes = {len(step) for step in self._norms}
        if len(sizes) == 1:
            return torch.linalg.vector_norm(flat.view(len(self._norms), -1), self.norm_type, dim=1)
        parts = flat.split([len(step) for step in self._norms])  # a parameter without a gradient
        return torch.stack([torch.linalg.vector_norm(part, self.norm_type) for part in parts])

    def on_validation_end(self, trainer, state, metrics):
        if self._norms:
            totals = self._totals()
            if self._world is not None:  # the whole gradient's norms from every rank's shard norms
                totals = self._world.total_norms(totals, self.norm_type)
            norms = [float(n) for n in totals.cpu()]
            finite = [n for n in norms if math.isfinite(n)]
            metrics["grad_norm"] = sum(finite) / len(finite) if finite else math.nan
            metrics["grad_norm_max"] = max(norms)
        self._norms = []

    def state_dict(self):  # a mid-epoch resume keeps the epoch's measurements
        return {"norms": [float(n) for n in self._totals()] if self._norms else []}

    def load_state_dict(self, state):
        self._norms = [[torch.tensor(n)] for n in state.get("norms", [])]  # a total is its own norm
