"""DP-FTRL: private training that assumes no sampling and no shuffling (Kairouz et al. 2021,
"Practical and private (deep) learning without sampling or shuffling").

DP-SGD's guarantee leans on Poisson sampling: each row joins each step with probability q, and
the accounting amplifies the privacy of every step by it. Real pipelines often cannot promise
that. DP-FTRL takes the rows in fixed-size slices of the epoch's order (every row once an epoch,
fitwell's ordinary loop), clips each row's gradient (Opacus' ghost clipping, with no noise of
its own) and releases the *prefix sums* of the clipped gradient sums through tree aggregation:
each node of a binary tree over the epoch's steps holds Gaussian noise of sd
``noise_multiplier * max_grad_norm``, and the noisy prefix sum at step t carries the noise of the
O(log t) nodes that cover [1, t]. The optimizer is fed the difference of consecutive noisy prefix
sums (divided by the batch size), so it sees correlated noise whose running sum stays small. The
tree restarts every epoch; each row touches one leaf of each epoch's tree. The privacy is
accounted with Google's ``dp_accounting`` (``SingleEpochTreeAggregationDpEvent`` per epoch, RDP,
replace-one-row-with-a-special-row neighbours), without any amplification.

Node noise is drawn from a generator seeded by (seed, epoch, level, index), so a resumed run adds
the same noise as an unbroken one without storing any. The BLT mechanism is ``fitwell.privacy.blt``
(``mechanism: blt``); the "honaker" variance reduction of the tree is not built.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from fitwell.errors import ConfigError
from fitwell.privacy.dpsgd import PrivacyPlan, PrivateTraining


def tree_nodes(t: int) -> list[tuple[int, int]]:
    """The (level, index) of the nodes whose intervals tile [1, t]: one per set bit of t; node
    (k, j) covers steps j * 2^k + 1 .. (j + 1) * 2^k."""
    return [(k, (t >> k) - 1) for k in range(t.bit_length()) if t >> k & 1]


class TreeNoise:
    """The noise of one epoch's tree over tensors of ``shapes``, node by node from seeds."""

    def __init__(self, shapes: list[torch.Size], std: float, seed: int, epoch: int):
        self.shapes, self.std, self.seed, self.epoch = shapes, std, seed, epoch

    def node(self, level: int, index: int) -> list[torch.Tensor]:
        state = np.random.SeedSequence([self.seed, self.epoch, level, index, 11]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        return [torch.randn(shape, generator=generator) * self.std for shape in self.shapes]

    def prefix(self, t: int) -> list[torch.Tensor]:
        """The noise in the released sum of steps 1..t (zeros for t = 0)."""
        total = [torch.zeros(shape) for shape in self.shapes]
        for level, index in tree_nodes(t):
            for acc, noise in zip(total, self.node(level, index), strict=True):
                acc += noise
        return total


def ftrl_epsilon(noise_multiplier: float, steps_per_epoch: int, steps: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``steps`` steps (a tree restarted every ``steps_per_epoch``)."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    if steps <= 0:
        return 0.0
    epochs, rest = divmod(steps, steps_per_epoch)
    events = []
    if epochs:
        events.append(dp_accounting.SelfComposedDpEvent(
            dp_accounting.SingleEpochTreeAggregationDpEvent(noise_multiplier, steps_per_epoch), epochs))
    if rest:
        events.append(dp_accounting.SingleEpochTreeAggregationDpEvent(noise_multiplier, rest))
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return float(accountant.get_epsilon(delta))


def smallest_multiplier(spent, epsilon: float, what: str) -> float:
    """The smallest noise multiplier z (to 0.05%) with ``spent(z) <= epsilon``, by bisection."""
    low, high = 0.05, 1000.0
    if spent(high) > epsilon:
        raise ConfigError(f"privacy.epsilon: {epsilon:g} is too small for {what}")
    while high / low >= 1.0005:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high


def plan_ftrl(config: Any, rows: int, epsilon: float, delta: float) -> PrivacyPlan:
    """The noise multiplier that spends ``epsilon`` over ``train.epochs`` epochs of trees."""
    batch = min(config.train.batch_size, rows)
    per_epoch = math.ceil(rows / batch)
    steps = config.train.epochs * per_epoch
    multiplier = smallest_multiplier(lambda z: ftrl_epsilon(z, per_epoch, steps, delta), epsilon,
                                     f"DP-FTRL over {config.train.epochs} epochs; raise privacy.epsilon or"
                                     " lower train.epochs")
    privacy = config.privacy
    return PrivacyPlan(epsilon, delta, multiplier, batch / rows, batch, steps, privacy.max_grad_norm,
                       "rdp (tree aggregation, dp_accounting)", privacy.clipping, mechanism="dp-ftrl")


class CorrelatedNoise(PrivateTraining):
    """What DP-FTRL and BLT share: fixed slices of a row order (``per_epoch`` steps an epoch),
    Opacus' clipped sums without noise, and their own noise added by ``add_noise(optimizer)``
    after the division by the batch size and before the optimizer steps."""

    def __init__(self, plan: PrivacyPlan, seed: int, per_epoch: int):
        super().__init__(plan, seed)
        self.per_epoch = per_epoch
        self._params: list[torch.Tensor] = []

    def wrap(self, model, optimizer, loss_fn):
        clipping_only = PrivacyPlan(**{**self.plan.__dict__, "noise_multiplier": 0.0, "mechanism": "dp-sgd",
                                       "accountant": "rdp", "blt": None})
        module, private, loss = PrivateTraining(clipping_only, self.seed).wrap(model, optimizer, loss_fn)
        self._params = [p for p in model.parameters() if p.requires_grad]
        private.attach_step_hook(self.add_noise)
        return module, private, loss

    def add_noise(self, optimizer) -> None:
        raise NotImplementedError

    def batches(self, rows: int) -> int:
        return self.per_epoch

    def slice(self, order: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
        size = int(self.plan.expected_batch_size)
        return order[batch * size:(batch + 1) * size].to(device)

    def stepped(self) -> None:
        self.steps += 1


class TreeAggregationTraining(CorrelatedNoise):
    """DP-FTRL for a Trainer: fixed slices of each epoch's order; the tree's noise difference."""

    def __init__(self, plan: PrivacyPlan, seed: int, per_epoch: int):
        super().__init__(plan, seed, per_epoch)
        self._where = (0, 0)  # (epoch, step within it, 1-based) of the step being taken
        self._tree: TreeNoise | None = None
        self._order: tuple[int, torch.Tensor] | None = None
        self._last: tuple[int, list[torch.Tensor]] = (-1, [])  # (t, prefix noise at t) of this tree

    def sample(self, rows: int, epoch: int, batch: int, device: torch.device) -> torch.Tensor:
        """Step ``batch``'s slice of the epoch's seeded order: every row once an epoch."""
        if self._order is None or self._order[0] != epoch:
            state = np.random.SeedSequence([self.seed, epoch, 5]).generate_state(1)[0]
            self._order = (epoch, torch.randperm(rows, generator=torch.Generator().manual_seed(int(state))))
        self._where = (epoch, batch + 1)
        return self.slice(self._order[1], batch, device)

    def add_noise(self, optimizer) -> None:
        """The optimizer's gradient (clipped sum / batch size) gets the change in the tree's
        prefix noise from step t - 1 to t, over the batch size."""
        epoch, t = self._where
        if self._tree is None or self._tree.epoch != epoch:
            std = self.plan.noise_multiplier * self.plan.max_grad_norm
            self._tree = TreeNoise([p.shape for p in self._params], std, self.seed, epoch)
            self._last = (-1, [])
        previous = self._last[1] if self._last[0] == t - 1 else self._tree.prefix(t - 1)
        current = self._tree.prefix(t)
        for p, now, before in zip(self._params, current, previous, strict=True):
            p.grad.add_((now - before).to(p.grad.device), alpha=1.0 / self.plan.expected_batch_size)
        self._last = (t, current)

    def epsilon(self) -> float:
        return ftrl_epsilon(self.plan.noise_multiplier, self.per_epoch, self.steps, self.plan.delta)

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
