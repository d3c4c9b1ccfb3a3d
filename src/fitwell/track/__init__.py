"""Run directories and tracking."""

from fitwell.track.run_dir import RunDir, default_run_name, environment

__all__ = ["RunDir", "default_run_name", "environment"]
