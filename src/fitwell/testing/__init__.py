"""Reusable contract suites: every registry entry must pass its registry's checks."""

from fitwell.testing.models import check_model

__all__ = ["check_model"]
