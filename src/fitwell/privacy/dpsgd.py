"""Differentially private training: DP-SGD through Opacus, on the loop's own index gathers.

What the loop does is what is accounted. Each step takes a Poisson sample of the training rows
(every row joins with probability ``q = batch_size / n``, drawn from a generator seeded by
(seed, epoch, step), so a resumed run draws the same batches), clips each row's gradient to
``max_grad_norm`` (per-row norms without per-row gradients: ``fitwell.privacy.fastclip``'s one
backward pass for networks of linear and embedding layers, Opacus' ghost clipping for the rest;
or Opacus' per-sample gradients), adds Gaussian noise of ``noise_multiplier * max_grad_norm``
to the sum and divides by the expected batch size. An empty sample still takes its noised step
(skipping it would tell). The noise multiplier is calibrated before training (Opacus'
``get_noise_multiplier``) so that the planned ``epochs * round(n / batch_size)`` steps spend
``privacy.epsilon`` at ``delta``; the accountant steps with the loop and its history is
checkpointed, so a resumed run's epsilon is the unbroken run's. The loop stops when the planned
steps are spent.

Covered: the preprocessing statistics (public values or OpenDP releases,
``fitwell.privacy.preprocess``, charged to the same budget) and the training steps. Not covered
(stated in metrics.json and the report): what ``NOT_COVERED`` lists. A private run keeps its last
weights: early stopping is off, so validation rows do not pick them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fitwell.config.privacy import resolve_delta
from fitwell.engine.callbacks.base import Callback
from fitwell.errors import ConfigError
from fitwell.privacy.fastclip import BookKeeping, BookKeepingLoss, NoisyStep, eligible

NOT_COVERED = ("the column roles (number, category, ID) inferred from the data types and values; set"
               " data.columns to make them public",
               "the data audit and the report's data plots, which read the raw rows (kept in the run"
               " directory: do not publish them)",
               "the training loss and validation metrics logged every epoch (computed without noise)")


def steps_per_epoch(rows: int, batch_size: float) -> int:
    """Poisson-sampled steps an epoch: round(n / expected batch size)."""
    return max(1, round(rows / batch_size))


@dataclass
class PrivacyPlan:
    """The calibrated mechanism of one private run (``epsilon``/``delta``: the training's share)."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    expected_batch_size: float
    steps: int
    max_grad_norm: float
    accountant: str
    clipping: str
    mechanism: str = "dp-sgd"
    preprocessing: tuple[float, float] = (0.0, 0.0)  # (epsilon, delta) spent outside the training
    adaptive: tuple[float, float, float] | None = None  # (target quantile, bound's rate, count noise sd)
    blt: tuple | None = None  # (theta, omega, Gaussian multiplier) of the BLT mechanism (privacy.blt)

    @property
    def gradient_noise(self) -> float:
        """The gradient's noise multiplier: all of it, or with adaptive clipping the part left
        once the count's noise is paid (Andrew et al. 2021: sigma^-2 = sigma_g^-2 + (2 sigma_b)^-2)."""
        if self.adaptive is None:
            return self.noise_multiplier
        return (self.noise_multiplier ** -2 - (2 * self.adaptive[2]) ** -2) ** -0.5

    def describe(self) -> str:
        pre = f"; preprocessing {self.preprocessing[0]:g}" if self.preprocessing[0] else ""
        return (f"privacy: {self.mechanism.upper()} to epsilon {self.epsilon:g} at delta"
                f" {self.delta:.0e}{pre} -- noise multiplier {self.noise_multiplier:.3f}, sample rate"
                f" {self.sample_rate:.4g}, {self.steps} steps, rows clipped {self.clipped()}"
                f" ({self.clipping}), {self.accountant} accountant")

    def clipped(self) -> str:
        if self.adaptive is None:
            return f"to {self.max_grad_norm:g}"
        return f"at their {self.adaptive[0]:.0%} norm quantile (adaptive, from {self.max_grad_norm:g})"


def plan_privacy(config: Any, rows: int, preprocessing: tuple[float, float] = (0.0, 0.0)) -> PrivacyPlan:
    """Calibrate the noise so that ``train.epochs`` of Poisson-sampled steps over ``rows`` spend
    what the preprocessing (``(epsilon, delta)`` it released) left of the budget."""
    from opacus.accountants.utils import get_noise_multiplier

    privacy, train = config.privacy, config.train
    if rows < 2:
        raise ConfigError(f"privacy: {rows} training rows; differential privacy needs a table")
    total_delta = resolve_delta(privacy.delta, rows)
    epsilon, delta = privacy.epsilon - preprocessing[0], total_delta - preprocessing[1]
    batch = min(train.batch_size, rows)
    rate = batch / rows
    steps = train.epochs * steps_per_epoch(rows, batch)
    try:
        with warnings.catch_warnings():  # the search's large-sigma probes warn of RDP's alpha range
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate,
                                         steps=steps, accountant=privacy.accountant,
                                         epsilon_tolerance=0.005)
    except ValueError as err:
        raise ConfigError(f"privacy.epsilon: {privacy.epsilon:g} is too small for {steps} steps at sample"
                          f" rate {rate:.3g} ({err}); raise privacy.epsilon, or lower train.epochs or"
                          " train.batch_size") from err
    adaptive, bound = None, privacy.max_grad_norm
    if bound == "auto":  # count noise batch/20 and rate 0.2: Andrew et al.'s settings
        adaptive, bound = (privacy.clip_quantile, 0.2, batch / 20), 1.0
        if sigma >= 2 * adaptive[2]:
            raise ConfigError(f"privacy.max_grad_norm: auto needs train.batch_size above {10 * sigma:.0f}"
                              f" at this budget (the noise multiplier {sigma:.2f} must stay under batch/10);"
                              " raise it, or give a number")
    return PrivacyPlan(epsilon, delta, float(sigma), rate, batch, steps, bound,
                       privacy.accountant, privacy.clipping, preprocessing=preprocessing, adaptive=adaptive)


def poisson_rows(rows: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """The rows of a Poisson sample (each joins independently with probability ``rate``), drawn
    as geometric gaps between joiners: about rate * rows random numbers, not rows of them."""
    if rate >= 1:
        return torch.arange(rows)
    expected = rows * rate
    found, position = [], -1.0
    while True:
        size = int(expected + 6 * math.sqrt(expected) + 16)
        uniform = torch.rand(size, generator=generator, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-uniform) / math.log1p(-rate)) + 1
        positions = position + torch.cumsum(gaps, 0)
        inside = positions[positions < rows]
        found.append(inside)
        if len(inside) < size:
            return torch.cat(found).long()
        position = float(positions[-1])


def private_layers_problem(model: nn.Module) -> str | None:
    """Opacus' list of the layers that cannot train privately (BatchNorm and the like), or None."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if not errors:
        return None
    return "; ".join(sorted({str(e) for e in errors}))


def private_epoch(trainer, data, state) -> float:
    """One epoch of a Trainer with ``privacy``: every step a Poisson sample of the rows, one
    clipped and noised step each (an empty sample too), the accountant stepped with it."""
    privacy, optimizer = trainer.privacy, trainer.optimizer
    hooks = {name: [cb for cb in trainer.callbacks if cb.uses_hook(name)]
             for name in ("on_batch_start", "on_batch_end", "on_before_optimizer_step")}
    trainer.model.train()
    total = torch.full((), state.epoch_total, device=trainer.device)
    last = total
    for batch in range(state.batch_in_epoch, state.batches_per_epoch):
        if privacy.spent_all:
            break
        for cb in hooks["on_batch_start"]:
            cb.on_batch_start(trainer, state)
        index = privacy.sample(len(data), state.epoch, batch, data.numeric.device)
        if len(index):
            part = data.select(index).to(trainer.device)
            loss = trainer.batch_loss(part.numeric, part.codes, part.inputs, part.target, part.weight,
                                      0, len(index))
            trainer._backward(loss)
            last = loss.detach()
            total += last * len(index)
        else:  # nothing sampled: the step still adds its noise
            for p in trainer.module.parameters():
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)
        for cb in hooks["on_before_optimizer_step"]:
            cb.on_before_optimizer_step(trainer, state)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        privacy.stepped()
        if trainer.schedule is not None and trainer.schedule.interval == "batch":
            trainer.schedule.scheduler.step()
        if trainer.averaging is not None and trainer.averaging.per_step:
            trainer.averaging.update(trainer.module)
        state.step += 1
        if hooks["on_batch_end"]:
            state.batch_in_epoch, state.last_loss, state.epoch_total = batch + 1, last, total
            for cb in hooks["on_batch_end"]:
                cb.on_batch_end(trainer, state)
            if state.should_stop:
                break
    state.batch_in_epoch, state.epoch_total, state.at_step_boundary = 0, 0.0, True
    return float(total) / max(1.0, state.batches_per_epoch * privacy.plan.expected_batch_size)


class PrivateTraining(Callback):
    """The private half of a Trainer: wraps its module, optimizer and loss, draws the batches,
    steps the accountant, logs epsilon every epoch and stops when the planned steps are spent."""

    order = 5
    state_key = "privacy"

    def __init__(self, plan: PrivacyPlan, seed: int):
        from opacus.accountants import create_accountant

        self.plan, self.seed = plan, seed
        self.accountant = create_accountant(mechanism=plan.accountant) if plan.mechanism == "dp-sgd" else None
        self.steps = 0
        self._spent: dict[int, float] = {}
        self._one_step = None
        self._generator = torch.Generator()
        self.clipper: tuple = ()  # (what holds the per-row norms and the bound, the private optimizer)
        self.bound = plan.max_grad_norm  # the clipping bound now (it moves with adaptive clipping)

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module):
        """``(module, optimizer, training loss)`` that clip per row and add the noise."""
        problem = private_layers_problem(model)
        if problem:
            raise ConfigError(f"privacy: this model has layers that cannot train privately: {problem}")
        if not hasattr(loss_fn, "per_row"):
            raise ConfigError("train.loss: a private run needs a built-in loss (each row's loss)")
        plan = self.plan
        if plan.clipping == "ghost" and eligible(model):  # one backward pass (fitwell.privacy.fastclip)
            clipping = BookKeeping(model, plan.max_grad_norm)
            private = NoisyStep(optimizer, plan.gradient_noise, plan.max_grad_norm, plan.expected_batch_size)
            self.clipper = (clipping, private)
            return model, private, BookKeepingLoss(loss_fn, clipping)
        if plan.clipping in ("ghost", "opacus_ghost"):
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping

            module = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="mean",
                                                          max_grad_norm=plan.max_grad_norm,
                                                          use_ghost_clipping=True)
            private = DPOptimizerFastGradientClipping(
                optimizer, noise_multiplier=plan.gradient_noise, max_grad_norm=plan.max_grad_norm,
                expected_batch_size=plan.expected_batch_size, loss_reduction="mean")
            self.clipper = (module, private)
            return module, private, GhostLoss(loss_fn, module, private)
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        private = DPOptimizer(optimizer, noise_multiplier=plan.gradient_noise,
                              max_grad_norm=plan.max_grad_norm,
                              expected_batch_size=plan.expected_batch_size, loss_reduction="mean")
        self.clipper = (module, private)
        return module, private, PerRowMean(loss_fn)

    def epoch(self, trainer, data, state) -> float:
        return private_epoch(trainer, data, state)

    def batches(self, rows: int) -> int:
        """Steps an epoch: round(n / expected batch size) Poisson samples."""
        return steps_per_epoch(rows, self.plan.expected_batch_size)

    def sample(self, rows: int, epoch: int, batch: int, device: torch.device) -> torch.Tensor:
        """The rows of step ``batch`` of ``epoch``: each joins with probability q (Poisson)."""
        seed = ((self.seed * 1_000_003 + epoch) * 1_000_033 + batch) % 2**63  # distinct per step
        return poisson_rows(rows, self.plan.sample_rate, self._generator.manual_seed(seed)).to(device)

    def stepped(self) -> None:
        self.accountant.step(noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate)
        self.steps += 1
        if self.plan.adaptive is not None:
            self._adapt_bound()

    def _adapt_bound(self) -> None:
        """Move the bound geometrically towards the target quantile of the norms, by a noised
        count of the rows it left unclipped (the global generator: a resumed run draws the same)."""
        quantile, rate, count_noise = self.plan.adaptive
        module, optimizer = self.clipper
        try:
            norms = module.per_sample_gradient_norms
            module.per_sample_gradient_norms = None
        except AttributeError:  # an empty Poisson sample: no rows, no norms
            norms = None
        below = 0.0 if norms is None else float((norms <= self.bound).sum())
        share = (below + float(torch.randn(())) * count_noise) / self.plan.expected_batch_size
        self.bound *= math.exp(-rate * (share - quantile))
        module.max_grad_norm = optimizer.max_grad_norm = self.bound

    @property
    def spent_all(self) -> bool:
        return self.steps >= self.plan.steps

    def epsilon(self) -> float:
        """Epsilon spent so far by the configured accountant (cached by step count). Every step
        has the same (sigma, q), so RDP is the one-step curve times the steps: no recomputation."""
        if not self.steps:
            return 0.0
        if self.steps not in self._spent:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
                if self.plan.accountant == "rdp":
                    self._spent[self.steps] = self._rdp_epsilon()
                else:
                    self._spent[self.steps] = float(self.accountant.get_epsilon(delta=self.plan.delta))
        return self._spent[self.steps]

    def _rdp_epsilon(self) -> float:
        from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

        orders = self.accountant.DEFAULT_ALPHAS
        if self._one_step is None:
            self._one_step = compute_rdp(q=self.plan.sample_rate, steps=1, orders=orders,
                                         noise_multiplier=self.plan.noise_multiplier)
        spent = get_privacy_spent(orders=orders, rdp=self._one_step * self.steps, delta=self.plan.delta)
        return float(spent[0])

    def on_validation_end(self, trainer, state, row: dict) -> None:
        """Epsilon in the epoch's row: every epoch with the rdp accountant (cheap), else about
        ten times a run and at its end (prv: some 60 ms a call, an epoch's cost on a small table)."""
        every = 1 if self.plan.accountant == "rdp" else max(1, math.ceil(trainer.epochs / 10))
        if state.epoch % every == 0 or state.epoch >= trainer.epochs or self.spent_all:
            row["epsilon"] = round(self.epsilon(), 4)
        if self.plan.adaptive is not None:
            row["max_grad_norm"] = round(self.bound, 5)
        if self.spent_all and state.epoch < trainer.epochs:
            state.should_stop = True
            state.stop_reason = f"privacy budget spent after {self.steps} steps"

    def summary(self, preprocessing: dict | None = None) -> dict:
        """What metrics.json and the report state about the run's privacy: epsilon and delta of
        the whole run (preprocessing + training, sequential composition) and each part."""
        plan = self.plan
        training = self.epsilon()
        pre_epsilon, pre_delta = plan.preprocessing  # the preprocessing's, and a tuning score's
        score = round(pre_epsilon - (preprocessing or {}).get("epsilon", 0.0), 6)
        return {"validation_epsilon": score, "mechanism": plan.mechanism,
                "epsilon": round(training + pre_epsilon, 4),
                "target_epsilon": round(plan.epsilon + pre_epsilon, 6),
                "delta": plan.delta + pre_delta, "training_epsilon": round(training, 4),
                "training_delta": plan.delta, "preprocessing": preprocessing or {"epsilon": 0.0},
                "noise_multiplier": round(plan.noise_multiplier, 5),
                "sample_rate": plan.sample_rate, "expected_batch_size": plan.expected_batch_size,
                "steps": self.steps, "planned_steps": plan.steps, "max_grad_norm": round(self.bound, 6),
                "adaptive_clipping": None if plan.adaptive is None else dict(zip(
                    ("target_quantile", "rate", "count_noise"), plan.adaptive, strict=True)),
                "accountant": plan.accountant, "clipping": plan.clipping,
                "covers": "the preprocessing statistics (public values or OpenDP releases) and the"
                          " training steps (DP-SGD)", "not_covered": list(NOT_COVERED)}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "history": [list(h) for h in self.accountant.history],
                "bound": self.bound}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.accountant.history = [tuple(h) for h in state["history"]]
        if self.plan.adaptive is not None:
            self.bound = float(state["bound"])
            module, optimizer = self.clipper
            module.max_grad_norm = optimizer.max_grad_norm = self.bound


@dataclass
class GhostLoss:
    """The training loss of ghost clipping: each row's loss, wrapped so that ``backward`` runs
    Opacus' two passes (norms, then the clipped sum)."""

    loss_fn: Any
    module: Any
    optimizer: Any

    def __call__(self, output, target, weight=None):
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        per_row = self.loss_fn.per_row(output, target, weight)
        return DPTensorFastGradientClipping(self.module, self.optimizer, per_row, "mean")


@dataclass
class PerRowMean:
    """The training loss of per-sample clipping: the plain mean of each row's loss (Opacus scales
    the per-sample gradients by the batch size under ``loss_reduction="mean"``)."""

    loss_fn: Any

    def __call__(self, output, target, weight=None):
        return self.loss_fn.per_row(output, target, weight).mean()
