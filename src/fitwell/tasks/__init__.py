"""Tasks beyond labels on the same run directory, tracking, tuning and report: reinforcement
learning on Stable-Baselines3 (``train_policy``, ``load_policy``)."""

from fitwell.tasks.reinforcement import PolicyRun, load_policy, train_policy

__all__ = ["PolicyRun", "load_policy", "train_policy"]
