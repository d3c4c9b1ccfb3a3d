"""Weight averaging: exponential moving average (per step) and stochastic weight averaging (per
epoch, with a constant SWA learning rate), on ``torch.optim.swa_utils``."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """Holds the averaged copy of a model and knows when to update it.

    Args:
        module: the model being trained.
        kind: "ema" (updated after every optimizer step) or "swa" (after every epoch from
            ``start_epoch``, with batch-norm statistics recomputed at the end).
        decay: EMA decay.
        start_epoch: first SWA epoch (1-based).
        swa_lr: SWA's constant learning rate (None keeps the optimizer's).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, kind: str = "ema",
                 decay: float = 0.999, start_epoch: int = 1, swa_lr: float | None = None):
        self.kind, self.start_epoch = kind, start_epoch
        if kind == "ema":
            self.model = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        else:
            self.model = AveragedModel(module)
        self.swa_scheduler = None
        if kind == "swa" and swa_lr:
            self.swa_scheduler = SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=1)

    @property
    def per_step(self) -> bool:
        return self.kind == "ema"

    def active(self, epoch: int) -> bool:
        """SWA averages from ``start_epoch`` (1-based, ``epoch`` = epochs completed)."""
        return self.kind == "ema" or epoch >= self.start_epoch

    def update(self, module: nn.Module) -> None:
        self.model.update_parameters(module)

    @property
    def module(self) -> nn.Module:
        return self.model.module

    @torch.no_grad()
    def finish(self, batches) -> None:
        """SWA: recompute batch-norm running statistics for the averaged weights."""
        if self.kind != "swa":
            return
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = {}
        for norm in norms:
            norm.reset_running_stats()
            momenta[norm] = norm.momentum
            norm.momentum = None  # cumulative average over the pass
        was_training = self.module.training
        self.module.train()
        for numeric, codes, inputs in batches:
            self.module(numeric, codes, **inputs)
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        self.module.train(was_training)

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict()}
        if self.swa_scheduler is not None:
            state["swa_scheduler"] = self.swa_scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.swa_scheduler is not None and "swa_scheduler" in state:
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])
