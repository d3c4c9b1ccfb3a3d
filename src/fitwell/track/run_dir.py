"""The run directory: everything a run saves, at fixed names, so predict/evaluate/resume need
nothing else."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fitwell.errors import UserError

PACKAGES = ("fitwell", "torch", "lightning-fabric", "numpy", "pandas", "scikit-learn", "pydantic",
            "skops", "safetensors")


class RunDir:
    """Paths inside ``runs/<name>/``.

    Example:
        >>> RunDir(Path("runs/demo")).metrics  # doctest: +SKIP
        PosixPath('runs/demo/metrics.json')
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    preprocess = property(lambda self: self.path / "preprocess")
    model = property(lambda self: self.path / "model.safetensors")
    model_spec = property(lambda self: self.path / "model.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    history = property(lambda self: self.path / "history.jsonl")
    metrics = property(lambda self: self.path / "metrics.json")
    env = property(lambda self: self.path / "env.json")
    data_report = property(lambda self: self.path / "data.json")
    audit = property(lambda self: self.path / "audit.json")
    fairness = property(lambda self: self.path / "fairness.json")
    doctor = property(lambda self: self.path / "doctor.json")
    report = property(lambda self: self.path / "report.html")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    test_predictions = property(lambda self: self.path / "test_predictions.csv")

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, overwrite: bool = False) -> RunDir:
        path = Path(runs_dir) / name
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise UserError(
                f"run directory {path} already exists; pick another track.name, set"
                f" track.overwrite=true, or continue it with: fitwell train --resume {path}"
            )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def require(self) -> RunDir:
        """Check that this is a finished run directory (used by predict / evaluate)."""
        if not self.path.is_dir():
            raise UserError(f"run directory {self.path} does not exist")
        for needed in (self.config, self.model, self.model_spec, self.preprocess / "preprocess.json"):
            if not needed.exists():
                raise UserError(
                    f"{self.path} is not a finished fitwell run: {needed.name} is missing."
                    f" If training was interrupted, finish it with: fitwell train --resume {self.path}"
                )
        return self

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)

    def read_history(self) -> list[dict]:
        if not self.history.exists():
            return []
        return [json.loads(line) for line in self.history.read_text().splitlines() if line.strip()]


def default_run_name(stem: str) -> str:
    return f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')[:-3]}"


def environment(seed: int) -> dict[str, Any]:
    """Versions, seed, machine and git commit, for env.json."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
