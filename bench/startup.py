"""Fixed costs of one ``fitwell train``: seconds from the command to the first training step, and
from the last step to the process's exit, on a 500-row table.

Run: python bench/startup.py [--repeats 3] [extra dotted overrides...]

A probe callback (``bench/startup_probe.py``, named in ``train.callbacks``) writes the wall-clock
time of the first batch and of the end of training; the script times the whole process around it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def table(path: Path, rows: int = 500) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["color"] = rng.choice(["red", "green", "blue"], size=rows)
    frame["y"] = (frame["x0"] + frame["x1"] > 0).astype(int)
    frame.to_csv(path, index=False)


def once(folder: Path, extra: list[str]) -> dict[str, float]:
    probe = folder / "probe.json"
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               FITWELL_PROBE=str(probe))
    command = [sys.executable, "-m", "fitwell.cli", "train", "--quiet", str(folder / "config.yaml"),
               f"track.runs_dir={folder / 'runs'}", *extra]
    started = time.time()
    subprocess.run(command, env=env, check=True, capture_output=True)
    ended = time.time()
    marks = json.loads(probe.read_text())
    return {"to_first_step": marks["first_step"] - started,
            "training": marks["fit_end"] - marks["first_step"],
            "after_last_step": ended - marks["fit_end"], "total": ended - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table(folder / "data.csv")
        (folder / "config.yaml").write_text(
            f"data: {{source: {folder / 'data.csv'}, target: y}}\n"
            "train: {epochs: 5, callbacks: [{name: 'startup_probe:Probe'}]}\n")
        runs = [once(folder, [*args.overrides, f"track.name=r{i}"]) for i in range(args.repeats)]
    print(f"500-row table, 5 epochs, median of {args.repeats} ({' '.join(args.overrides) or 'defaults'}):")
    for key in ("to_first_step", "training", "after_last_step", "total"):
        values = [r[key] for r in runs]
        print(f"  {key.replace('_', ' '):<16} {statistics.median(values):6.2f} s"
              f"  (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
