"""The time budget of an ensemble (``ensemble.time_limit``)."""

from __future__ import annotations

import time

from fitwell.ensemble.boosting import BOOSTING_KINDS


def interruptible(spec) -> bool:
    """Whether a member stops by itself at a time limit: boosted trees (a deadline; HistGradient-
    Boosting through TimeBoxed) and fitwell networks (``train.max_time``), unless wrapped in
    scikit-learn's bagging or AdaBoost."""
    return (spec.kind in ("fitwell", "hist_gradient_boosting", *BOOSTING_KINDS) and not spec.bagging
            and not spec.boosting)


class MemberBudget:
    """``ensemble.time_limit``: whether the next member can still run, and the time it may take.
    A member that stops by itself (``interruptible``) runs while its share of the time left gives
    each fold model half a second (trees) or two (networks), and gets that share; any other member
    runs only when the dearest member so far would still fit. 15% of the limit (at least 3 s) is
    kept for combining, scoring, importance and the report."""

    def __init__(self, limit: float | None, started_at: float, folds: int):
        self.limit, self.started_at, self.folds = limit, started_at, folds
        self.spent: list[float] = []

    def left(self) -> float:
        return self.limit - self.reserve() - (time.monotonic() - self.started_at)

    def reserve(self) -> float:
        return max(0.15 * self.limit, 3.0)

    def deadline(self) -> float | None:
        """When every member must have stopped (a ``time.monotonic()`` reading), or None."""
        return None if self.limit is None else self.started_at + self.limit - self.reserve()

    def member_deadline(self, remaining: int) -> float | None:
        """When the next member stops adding trees: its fair share of the time left (members
        still to fit: ``remaining``, itself included), never past the run's deadline -- so one slow
        member (CatBoost on a multiclass table) cannot starve the ones after it."""
        if self.limit is None:
            return None
        now = time.monotonic()
        share = max(self.left(), 0.0) / max(remaining, 1)
        return min(now + share, self.deadline())

    def allows(self, spec, say, remaining: int = 1) -> bool:
        if self.limit is None or not self.spent:  # the first member always runs
            return True
        left = self.left()
        if interruptible(spec):
            # a network's fold fit needs about 2 s to learn anything (building, a few epochs, its
            # held-out scoring); trees stop within a round
            needed = (2.0 if spec.kind == "fitwell" else 0.5) * self.folds
            if left / max(remaining, 1) >= needed:
                return True
            why = f"too little for {self.folds} fold models"
        elif left > max(self.spent):
            return True
        else:
            why = f"and a member has taken up to {max(self.spent):.0f} s"
        say(f"member [bold]{spec.name}[/] skipped: {max(left, 0):.0f} s left of ensemble.time_limit"
            f" {self.limit:g} s, {why}")
        return False

    def for_member(self, spec, remaining: int = 1):
        """A fitwell member's spec with train.max_time set to its share of what is left (members
        still to fit: ``remaining``), split between its fold models and a refit."""
        if self.limit is None or spec.kind != "fitwell":
            return spec
        share = max(1.0, self.left() / max(remaining, 1) / (self.folds + 1))
        return spec.model_copy(update={"overrides": {**spec.overrides, "train.max_time": round(share, 1)}})
