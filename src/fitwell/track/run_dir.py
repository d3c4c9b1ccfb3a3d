"""The run directory: everything a run saves, at fixed names, so predict/evaluate/resume need
nothing else."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fitwell import files
from fitwell.errors import DamagedRun, UserError

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
    status = property(lambda self: self.path / "status.json")
    manifest = property(lambda self: self.path / "manifest.json")

    @classmethod
    def plan(cls, runs_dir: str | Path, name: str, overwrite: bool = False) -> RunDir:
        """The directory a new run will own; refused now if it is taken. Nothing is created
        until ``create`` (after the config and data have been validated)."""
        path = Path(runs_dir) / name
        if path.exists() and not path.is_dir():
            raise UserError(f"run directory {path} is a file; pick another track.name or track.runs_dir")
        if path.exists() and any(path.iterdir()) and not overwrite:
            advice = (f"continue it with: fitwell train --resume {path}" if resumable(path)
                      else "or delete it")
            raise UserError(f"run directory {path} already exists; pick another track.name, set"
                            f" track.overwrite=true, {advice}")
        return cls(path)

    def make(self) -> RunDir:
        if self.path.is_dir() and any(self.path.iterdir()):  # track.overwrite: the old run goes
            import shutil

            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def set_status(self, status: str, reason: str | None = None) -> None:
        """``running``, ``completed``, ``failed`` (with the reason) or ``interrupted``."""
        files.write_json(self.status, {
            "status": status, "reason": reason, "pid": os.getpid(), "host": socket.gethostname(),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def require(self, *needed: Path) -> RunDir:
        """Check that this is a finished run directory holding ``needed`` (predict / evaluate), and
        that none of them changed since the run wrote its manifest."""
        if not self.path.is_dir():
            raise UserError(f"run directory {self.path} does not exist")
        needed = needed or (self.config, self.model, self.model_spec, self.preprocess / "preprocess.json",
                            self.preprocess / "preprocess.skops")
        for path in needed:
            if not path.exists():
                raise DamagedRun(f"{self.path} is not a finished fitwell run: {path.name} is missing."
                                 f" {self.advice()}")
        self.verify(*needed)
        return self

    def advice(self) -> str:
        """What to do with a run that cannot be loaded: a command that works for this directory."""
        if resumable(self.path):
            return f"Training was interrupted; finish it with: fitwell train --resume {self.path}"
        if self.config.exists():
            return f"Restore the file from a copy, or train it again: fitwell train {self.config}"
        return "Restore the run directory from a copy, or train again."

    def verify(self, *paths: Path) -> None:
        """Each file's SHA-256 must match ``manifest.json`` (runs written before manifests: no check)."""
        if not self.manifest.exists():
            return
        hashes = self.read_json(self.manifest).get("sha256", {})
        for path in paths:
            expected = hashes.get(path.relative_to(self.path).as_posix())
            if expected is not None and files.sha256(path) != expected:
                raise DamagedRun(f"{path} was changed or damaged after the run finished (its hash does not"
                                 f" match manifest.json). {self.advice()}")

    def read_json(self, path: Path) -> Any:
        """A JSON file of the run, or a DamagedRun naming it."""
        try:
            return json.loads(path.read_text())
        except FileNotFoundError as err:
            raise DamagedRun(f"{path} is missing. {self.advice()}") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DamagedRun(f"{path} is not valid JSON ({err}); the file is damaged."
                             f" {self.advice()}") from err

    def load_preprocessor(self):
        """The fitted preprocessing, or a DamagedRun naming the unreadable file."""
        from fitwell.data.preprocess import Preprocessor

        folder = self.preprocess
        for name in ("preprocess.json", "preprocess.skops"):
            if not (folder / name).exists():
                raise DamagedRun(f"{folder / name} is missing. {self.advice()}")
        self.read_json(folder / "preprocess.json")
        try:
            return Preprocessor.load(folder)
        except UserError:
            raise
        except Exception as err:  # skops/zipfile/pickle errors of a truncated or altered file
            raise DamagedRun(f"{folder / 'preprocess.skops'} cannot be read ({type(err).__name__}: {err});"
                             f" the file is damaged. {self.advice()}") from err

    def write_json(self, path: Path, data: Any) -> None:
        files.write_json(path, data)

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


def resumable(path: Path) -> bool:
    """A run that stopped before scoring and left a checkpoint that ``--resume`` can read."""
    folder = Path(path) / "checkpoints"
    return (not (Path(path) / "metrics.json").exists() and (Path(path) / "config.yaml").exists()
            and folder.is_dir() and any(folder.glob("*.ckpt")))
