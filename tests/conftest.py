"""Shared fixtures. Under pytest-xdist (``make test`` runs two tests at a time) each worker's
libraries get their share of the cores: ``OMP_NUM_THREADS`` = cores / workers, set before numpy,
PyTorch or LightGBM load. Two workers that each took every core of a quiet machine at the start
would oversubscribe it once both train -- OpenMP threads (LightGBM, scikit-learn's trees, PyTorch
on Linux) spin while they wait for each other. A user's shell that sets it keeps its own value;
the tests of the thread rule itself clear it (``monkeypatch.delenv``)."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // _workers)))

import numpy as np
import pandas as pd
import pytest
import yaml


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    return make_mixed_frame()


def make_mixed_frame(seed: int = 0, n: int = 300) -> pd.DataFrame:
    """Seeded table with a known signal: numbers, messy categories, booleans, an ID and a constant."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    color = rng.choice([" Red", "red", "BLUE", "green"], size=n)
    city = np.array([f"city{i % 25}" for i in range(n)])
    flag = rng.choice(["yes", "no"], size=n)
    logit = 2.0 * x1 - 1.5 * x2 + (np.char.strip(np.char.lower(color)) == "red") * 1.0
    y = (logit + rng.normal(scale=0.5, size=n) > 0).astype(int)
    frame = pd.DataFrame({"customer_id": np.arange(1000, 1000 + n), "x1": x1, "x2": x2,
                          "color": color, "city": city, "flag": flag, "const": 7, "label": y})
    frame.loc[[3, 10, 50], "x1"] = np.nan
    frame.loc[[5, 60], "color"] = None
    return frame


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML run config under tmp_path whose runs go under tmp_path/runs."""

    def write(sections: dict, name: str = "run.yaml"):
        sections = dict(sections)
        track = dict(sections.get("track", {}))
        track.setdefault("runs_dir", str(tmp_path / "runs"))
        sections["track"] = track
        path = tmp_path / name
        path.write_text(yaml.safe_dump(sections))
        return path

    return write


def fast(**extra) -> dict:
    """Overrides that keep a test run to a second or two."""
    out = {"train.epochs": 8, "train.progress": False}
    out.update(extra)
    return out
