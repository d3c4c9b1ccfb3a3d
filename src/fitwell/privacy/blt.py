"""The BLT mechanism: DP-FTRL's correlated noise from a few buffers (Dvijotham, McMahan,
Pillutla, Steinke and Thakurta 2024, "Efficient and near-optimal noise generation for streaming
differential privacy").

A matrix-factorization mechanism releases ``C X + Z`` for the clipped per-step gradient sums X
(n steps) and Gaussian Z, and the optimizer sees ``C^-1 (C X + Z) = X + C^-1 Z``: every step's
noise is a fixed combination of the fresh draws so far. BLT ("buffered linear Toeplitz") picks
``C^-1`` lower-triangular Toeplitz with coefficients r_0 = 1, r_k = -sum_i theta_i omega_i^(k-1),
so the step-t noise is ``z_t - sum_i theta_i b_i`` with d buffers updated as
``b_i <- omega_i b_i + z_t``: d tensors of the model's size, whatever the number of steps.

Every row is taken once an epoch at the same place of one fixed order (``(k, b)``-participation,
b = steps an epoch): a row touches steps j, j + b, j + 2b, ... The release is one Gaussian
mechanism whose sensitivity is ``max_grad_norm * sqrt(sum over i, j in P of <C_i, C_j>)``; for
a Toeplitz C with non-negative, non-increasing coefficients the largest participation set P is
the first one, {0, b, 2b, ...} (``sensitivity`` computes that; ``tests/privacy`` checks it against
every P on small cases). epsilon is that Gaussian mechanism's, from ``dp_accounting`` (RDP): no
amplification by sampling or shuffling. The theta and omega (d = 2) minimise the released prefix
sums' total squared error, ``||A C^-1||_F^2 * sensitivity^2`` (A: the prefix-sum workload), by
Nelder-Mead over a constrained parameterisation -- not the paper's own optimiser.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from fitwell.errors import ConfigError
from fitwell.privacy.dpsgd import PrivacyPlan
from fitwell.privacy.ftrl import CorrelatedNoise, smallest_multiplier


def inverse_coefficients(theta: np.ndarray, omega: np.ndarray, n: int) -> np.ndarray:
    """r_0..r_{n-1} of C^-1: 1, then -sum_i theta_i omega_i^(k-1)."""
    k = np.arange(1, n)
    r = np.ones(n)
    r[1:] = -(theta[:, None] * omega[:, None] ** (k - 1)[None, :]).sum(0)
    return r


def coefficients(r: np.ndarray) -> np.ndarray:
    """c_0..c_{n-1} of C = (C^-1)^-1 for a lower-triangular Toeplitz C^-1 with r_0 = 1."""
    c = np.zeros(len(r))
    c[0] = 1.0
    for k in range(1, len(r)):
        c[k] = -np.dot(r[1:k + 1], c[k - 1::-1][:k])
    return c


def blt_coefficients(theta: np.ndarray, omega: np.ndarray, n: int) -> np.ndarray:
    """c_0..c_{n-1} of C in O(n d): C(x) = Q(x) / P(x) with Q = prod_i (1 - omega_i x) and
    P = Q - sum_i theta_i x prod_{j != i} (1 - omega_j x), so c follows P's recurrence."""
    q = np.array([1.0])
    for w in omega:
        q = np.convolve(q, [1.0, -w])
    p = np.concatenate([q, [0.0]])
    for i, t in enumerate(theta):
        rest = np.array([1.0])
        for j, w in enumerate(omega):
            if j != i:
                rest = np.convolve(rest, [1.0, -w])
        p[1:1 + len(rest)] -= t * rest
    from scipy.signal import lfilter

    impulse = np.zeros(n)
    impulse[0] = 1.0
    with np.errstate(all="ignore"):
        return lfilter(q, p, impulse)  # the impulse response of Q/P: C's coefficients


def sensitivity(c: np.ndarray, separation: int) -> float:
    """sqrt(sum over i, j in {0, b, 2b, ...} of <C_i, C_j>) for the Toeplitz C of ``c``: the
    worst participation set when c is non-negative and non-increasing."""
    n = len(c)
    starts = range(0, n, separation)
    total = 0.0
    for i in starts:
        for j in starts:
            lo, hi = min(i, j), max(i, j)
            total += float(np.dot(c[:n - hi], c[hi - lo:n - lo]))
    return math.sqrt(total)


def total_error(r: np.ndarray) -> float:
    """||A C^-1||_F^2 for the prefix-sum workload: A C^-1 is Toeplitz with the running sums of r."""
    running = np.cumsum(r)
    return float(np.sum(running ** 2 * np.arange(len(r), 0, -1)))


@lru_cache(maxsize=16)
def optimise(n: int, separation: int, buffers: int = 2) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """BLT parameters (theta, omega) for n steps and participations ``separation`` apart."""
    from scipy.optimize import minimize

    def unpack(x):
        omega = 1 / (1 + np.exp(-x[:buffers]))
        theta = np.exp(x[buffers:])
        return theta, omega

    def loss(x):
        theta, omega = unpack(x)
        c = blt_coefficients(theta, omega, n)
        if not np.all(np.isfinite(c)) or np.any(c < -1e-12) or np.any(np.diff(c) > 1e-12):  # not covered
            return 1e30
        return total_error(inverse_coefficients(theta, omega, n)) * sensitivity(c, separation) ** 2

    identity = np.concatenate([np.zeros(buffers), np.full(buffers, -30.0)])  # theta ~ 0: C = I
    rng = np.random.default_rng(0)
    starts = [np.concatenate([np.log(o / (1 - o)), np.log(t)])
              for o, t in ((np.sort(rng.uniform(0.3, 0.995, buffers)), rng.uniform(0.005, 0.3, buffers))
                           for _ in range(40))]
    scored = sorted(starts, key=loss)[:3]  # the valid starts with the least error, then polished
    found = [minimize(loss, x, method="Nelder-Mead", options={"maxiter": 800, "fatol": 1e-7}) for x in scored]
    best = min(found, key=lambda result: result.fun)
    x = best.x if best.fun < loss(identity) else identity  # never worse than no correlation
    theta, omega = unpack(x)
    return tuple(map(float, theta)), tuple(map(float, omega))


def gaussian_multiplier(epsilon: float, delta: float) -> float:
    """The noise multiplier of one Gaussian mechanism that is (epsilon, delta)-DP (dp_accounting RDP)."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    def spent(z):
        return RdpAccountant().compose(dp_accounting.GaussianDpEvent(z)).get_epsilon(delta)

    return smallest_multiplier(spent, epsilon, f"one Gaussian release at delta {delta:g}; raise it")


def plan_blt(config, rows: int, epsilon: float, delta: float) -> PrivacyPlan:
    """The BLT plan: its parameters for the run's steps, the sensitivity they give, and the noise
    (``noise_multiplier`` is per unit of ``max_grad_norm``: sd = multiplier * bound)."""
    batch = min(config.train.batch_size, rows)
    per_epoch = math.ceil(rows / batch)
    steps = config.train.epochs * per_epoch
    if steps > 20_000:
        raise ConfigError(f"privacy.mechanism: blt plans at most 20,000 steps here (the run has {steps});"
                          " use dp-ftrl or fewer epochs / a larger train.batch_size")
    theta, omega = optimise(steps, per_epoch)
    c = blt_coefficients(np.array(theta), np.array(omega), steps)
    z = gaussian_multiplier(epsilon, delta)
    return PrivacyPlan(epsilon, delta, z * sensitivity(c, per_epoch), batch / rows, batch, steps,
                       config.privacy.max_grad_norm, "rdp (one Gaussian release, dp_accounting)",
                       config.privacy.clipping, mechanism="blt", blt=(theta, omega, z))


class BufferedNoise(CorrelatedNoise):
    """BLT for a Trainer: one fixed order of the rows for every epoch, clipped sums without noise,
    then ``z_t - sum_i theta_i b_i`` (times the noise sd, over the batch size) before the step."""

    def __init__(self, plan: PrivacyPlan, seed: int, per_epoch: int):
        super().__init__(plan, seed, per_epoch)
        self.theta, self.omega, _ = plan.blt  # (the Gaussian multiplier is in noise_multiplier)
        self.buffers: list[list[torch.Tensor]] = []
        self._order: torch.Tensor | None = None

    def wrap(self, model, optimizer, loss_fn):
        wrapped = super().wrap(model, optimizer, loss_fn)
        self.buffers = [[torch.zeros_like(p) for p in self._params] for _ in self.theta]
        return wrapped

    def sample(self, rows: int, epoch: int, batch: int, device: torch.device) -> torch.Tensor:
        """Step ``batch``'s slice of the run's one order: a row sits at the same place each epoch."""
        if self._order is None or len(self._order) != rows:
            self._order = torch.randperm(rows, generator=torch.Generator().manual_seed(self.seed + 3))
        return self.slice(self._order, batch, device)

    def add_noise(self, optimizer) -> None:
        sd = self.plan.noise_multiplier * self.bound
        fresh = [torch.randn_like(p) for p in self._params]  # the global generator: checkpointed
        for index, p in enumerate(self._params):
            noise = fresh[index] - sum(t * b[index] for t, b in zip(self.theta, self.buffers, strict=True))
            p.grad.add_(noise.to(p.grad.device), alpha=sd / self.plan.expected_batch_size)
        for w, buffer in zip(self.omega, self.buffers, strict=True):
            for b, z in zip(buffer, fresh, strict=True):
                b.mul_(w).add_(z)

    def epsilon(self) -> float:
        """The whole release is one Gaussian mechanism: its epsilon once the run is planned."""
        return self.plan.epsilon if self.steps else 0.0

    def state_dict(self) -> dict:
        return {"steps": self.steps, "buffers": [[b.clone() for b in buffer] for buffer in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        for mine, saved in zip(self.buffers, state["buffers"], strict=True):
            for b, s in zip(mine, saved, strict=True):
                b.copy_(s)
