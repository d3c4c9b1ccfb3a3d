"""``tune.sampler: rl`` -- architecture search by reinforcement learning: a REINFORCE controller
over the categorical choices of a search space (Zoph & Le 2017 in spirit; their controller is an
RNN, ours one softmax policy per choice, which is what a space of independent choices needs).

The controller holds a logit per option of every categorical parameter. A trial's architecture is
drawn from the softmax policies; its objective is the reward. After each finished trial the logits
take a policy-gradient step, ``lr * (reward - baseline) / scale * (onehot(choice) - softmax)``,
with an exponential moving average of the rewards as the baseline (as Zoph & Le) and their running
spread as the scale, so the step does not depend on the metric's units. The controller keeps no
state of its own: it replays the study's finished trials in order each time it samples, so several
worker processes, a resumed study and a PostgreSQL-shared study all see one controller. Numeric
parameters are left to ``independent`` (a random sampler by default).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def controller_logits(trials: list, space: dict, maximize: bool, lr: float = 0.5,
                      decay: float = 0.8) -> dict[str, np.ndarray]:
    """The controller's logits after learning from ``trials`` (finished, in order), for the
    categorical ``space`` ({name: CategoricalDistribution})."""
    logits = {name: np.zeros(len(dist.choices)) for name, dist in space.items()}
    baseline, spread = None, None
    for trial in trials:
        reward = trial.value if maximize else -trial.value
        if reward is None or not math.isfinite(reward):
            continue
        if baseline is None:
            baseline, spread = reward, 0.0
            continue
        advantage = reward - baseline
        spread = decay * spread + (1 - decay) * advantage ** 2
        step = lr * advantage / (math.sqrt(spread) + 1e-12)
        for name, dist in space.items():
            if name not in trial.params:
                continue
            choice = dist.choices.index(trial.params[name]) if trial.params[name] in dist.choices else None
            if choice is None:
                continue
            probs = softmax(logits[name])
            target = np.zeros_like(probs)
            target[choice] = 1.0
            logits[name] += step * (target - probs)
        baseline = decay * baseline + (1 - decay) * reward
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def build_rl_sampler(seed: int | None, independent=None):
    """An Optuna sampler (``optuna.samplers.BaseSampler``) with the REINFORCE controller."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.search_space import IntersectionSearchSpace

    class ReinforceSampler(BaseSampler):
        """REINFORCE over categorical choices; ``independent`` samples the rest."""

        def __init__(self):
            self.seed = seed or 0
            self.independent = independent or RandomSampler(seed=seed)
            self.space = IntersectionSearchSpace()

        def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
            return {name: dist for name, dist in self.space.calculate(study).items()
                    if isinstance(dist, CategoricalDistribution) and len(dist.choices) > 1}

        def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
            if not search_space:
                return {}
            if len(study.directions) > 1:
                raise ValueError("tune.sampler rl optimises one metric; give tune.metric one name")
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
            logits = controller_logits(sorted(done, key=lambda t: t.number), search_space, maximize)
            rng = np.random.default_rng([self.seed, trial.number])
            return {name: dist.choices[int(rng.choice(len(dist.choices), p=softmax(logits[name])))]
                    for name, dist in search_space.items()}

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.independent.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial) -> None:
            self.independent.before_trial(study, trial)

        def after_trial(self, study, trial, state, values) -> None:
            self.independent.after_trial(study, trial, state, values)

    return ReinforceSampler()
