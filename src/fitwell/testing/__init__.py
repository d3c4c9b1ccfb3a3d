"""Reusable contract suites: every registry entry must pass its registry's checks."""

from fitwell.testing.models import check_model
from fitwell.testing.quality import check_quality

__all__ = ["check_model", "check_quality"]
