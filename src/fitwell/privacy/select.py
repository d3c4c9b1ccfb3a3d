"""Private hyperparameter search: a random number of private trials, the best one kept, and one
epsilon for the whole procedure (Papernot & Steinke 2022, "Hyperparameter tuning with Renyi
differential privacy", Theorem 2).

Picking the best of several private runs by their validation scores leaks more than one run
does, and running a fixed number of them and taking the best can leak much more. Papernot and
Steinke show that when the *number* of trials K is itself random -- here truncated negative
binomial with eta = 1, i.e. geometric with mean mu -- and each trial (train, then release its
noised validation score) is (lambda, eps(lambda))-RDP, returning the best trial is
(lambda, eps')-RDP with

    eps'(lambda) = eps(lambda) + min over lambda^ of [(1 + eta)(1 - 1/lambda^) eps(lambda^)
                   + (1 + eta) log(1/gamma) / lambda^] + log(E[K]) / (lambda - 1),

gamma = 1/mu for eta = 1. Each trial's RDP curve is the Poisson-subsampled Gaussian of its DP-SGD
steps (Opacus' ``compute_rdp``) plus rho * lambda for its pure epsilon-DP releases (each
epsilon_i-DP release is epsilon_i^2/2-zCDP: the preprocessing's Laplace and exponential
mechanisms and the validation score). The bound assumes every trial runs the same mechanism and
the hyperparameters are drawn independently of earlier trials: a private search takes the
random sampler, no pruning, and a space that leaves the epochs, the batch size, the privacy and
the preprocessing settings alone (``check_private_search``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fitwell.errors import ConfigError

ORDERS = np.concatenate([np.linspace(1.1, 10.9, 99), np.arange(11.0, 64.0), [80, 128, 256, 512, 1024]])
LOSS_CAP = 10.0  # a row's validation loss is clipped here before its noised mean is released
FIXED_KEYS = ("train.epochs", "train.batch_size", "privacy.", "preprocess.", "split.", "data.", "seed")
SCORES = ("val_loss", "val_accuracy")


def check_private_search(config: Any) -> None:
    """What a private search must keep fixed for its epsilon to hold (see the module docstring)."""
    tune = config.tune
    problems = []
    if tune.sampler != "random":
        problems.append(f"tune.sampler: {tune.sampler} picks each trial from the earlier trials' scores;"
                        " a private search draws them independently: random")
    if tune.pruner != "none":
        problems.append("tune.pruner: pruning reads unnoised validation scores every epoch; none")
    if config.privacy.mechanism != "dp-sgd":
        problems.append("privacy.mechanism: a private search accounts DP-SGD trials; use dp-sgd")
    if tune.cv is not None:
        problems.append("tune.cv: folds are not accounted yet; remove it")
    metrics = tune.metric if isinstance(tune.metric, list) else [tune.metric]
    if len(metrics) != 1 or metrics[0] not in SCORES:
        problems.append(f"tune.metric: a private trial releases one noised score, {' or '.join(SCORES)}")
    fixed = sorted(key for key in tune.space if key.startswith(FIXED_KEYS))
    if fixed:
        problems.append(f"tune.space: {', '.join(fixed)} change the privacy mechanism between trials;"
                        " keep them fixed (search the learning rate, the model, the regularisation)")
    if problems:
        raise ConfigError("a private search (tune with a privacy section) cannot keep: "
                          + "; ".join(problems))


def sample_trials(mean: float, seed: int) -> int:
    """K ~ geometric with mean ``mean`` (truncated negative binomial, eta = 1), at least 1."""
    if mean < 1:
        raise ConfigError(f"tune.trials: {mean:g}; a private search needs a mean of at least 1 trial")
    return int(np.random.default_rng([seed, 97]).geometric(1.0 / mean))


def trial_rdp(summary: dict) -> np.ndarray:
    """The RDP curve (at ``ORDERS``) of one private trial, from its metrics.json privacy summary."""
    from opacus.accountants.analysis.rdp import compute_rdp

    if summary["preprocessing"].get("category_lists") and any(
            "DP" in v for v in summary["preprocessing"]["category_lists"].values()):
        raise ConfigError("privacy.categories: a private search needs every category list public (a"
                          " released list is (epsilon, delta)-DP, which this accounting does not take)")
    rdp = compute_rdp(q=summary["sample_rate"], noise_multiplier=summary["noise_multiplier"],
                      steps=summary["planned_steps"], orders=ORDERS)
    pure = [summary["preprocessing"].get("epsilon_each", 0.0)] * summary["preprocessing"].get("releases", 0)
    pure += [summary.get("validation_epsilon", 0.0)]
    rho = sum(e * e / 2 for e in pure)
    return np.asarray(rdp) + rho * ORDERS


def selection_epsilon(rdp: np.ndarray, mean_trials: float, delta: float) -> float:
    """Epsilon at ``delta`` of returning the best of K ~ geometric(mean) trials of curve ``rdp``."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    eta, gamma = 1.0, 1.0 / mean_trials
    hat = np.min((1 + eta) * (1 - 1 / ORDERS) * rdp + (1 + eta) * math.log(1 / gamma) / ORDERS)
    total = rdp + hat + math.log(mean_trials) / (ORDERS - 1)
    epsilon, _ = get_privacy_spent(orders=ORDERS, rdp=total, delta=delta)
    return float(epsilon)


def release_score(metric: str, task: str, output: np.ndarray, target: np.ndarray, epsilon: float) -> float:
    """A validation score released with OpenDP: each row's loss (clipped to ``LOSS_CAP``) or
    correctness, a Laplace sum over the (public) number of validation rows."""
    from fitwell.privacy.audit import row_losses
    from fitwell.privacy.preprocess import release_sum

    if metric == "val_accuracy":
        if task == "regression":
            raise ConfigError("tune.metric: val_accuracy is for classification; use val_loss")
        from fitwell.evaluate.metrics import probabilities

        rows, cap = (probabilities(task, output).argmax(axis=1) == target).astype(float), 1.0
    else:
        rows, cap = np.minimum(row_losses(task, output, target), LOSS_CAP), LOSS_CAP
    return release_sum(rows, 0.0, cap, epsilon) / max(1, len(rows))
