"""The quality floor of the contract suite: a table family at its defaults must clearly beat a
constant prediction on real tables, not merely lower its loss on one tiny batch.

Tables: for classification scikit-learn's bundled real data (nothing is downloaded): breast cancer
(binary, 569 rows) and wine (multiclass, 3 cultivars, 178 rows); for regression a seeded table
with a known answer -- Friedman's #1 function of five of eight numbers plus a category's shift,
noise sd 1 (600 rows; the best possible model's RMSE is 1, the constant's about 5.4; the four
families score 0.27-0.33 of the constant's RMSE -- tabm 0.25 at 1,000 rows, where it took 31 s of
the suite). On the real
diabetes table no family can clear a floor: on fitwell's seeded test split ridge regression is at
0.88x the constant and a default LightGBM at 1.02x. The constant is the mean, or the class
frequencies, of *all* the rows -- slightly better than one fitted on the training split, so the
floor is not lowered by luck.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# test loss of the model / test loss of the constant; below this it "clearly" beats the constant
FLOOR = {"regression": 0.6, "binary": 0.5, "multiclass": 0.5}
TABLES = {"regression": "friedman1", "binary": "breast_cancer", "multiclass": "wine"}


def quality_table(task: str, seed: int = 0) -> pd.DataFrame:
    """The table for ``task`` as a frame with a ``target`` column."""
    from sklearn import datasets

    if task == "regression":
        X, y = datasets.make_friedman1(600, n_features=8, noise=1.0, random_state=seed)
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
        group = np.random.default_rng(seed).integers(0, 4, len(frame))
        frame["group"] = np.array(["a", "b", "c", "d"])[group]
        frame["target"] = y + np.array([0.0, 2.0, -2.0, 4.0])[group]
        return frame
    bunch = getattr(datasets, f"load_{TABLES[task]}")(as_frame=True)
    return bunch.frame


def constant_loss(task: str, everything: np.ndarray, test: np.ndarray) -> float:
    """RMSE (regression) or log loss (classification) of the constant prediction on ``test``."""
    if task == "regression":
        return float(np.sqrt(np.mean((test - everything.mean()) ** 2)))
    classes, counts = np.unique(everything, return_counts=True)
    frequency = dict(zip(classes.tolist(), (counts / counts.sum()).tolist(), strict=True))
    return float(-np.mean([np.log(frequency[value]) for value in test.tolist()]))


def check_quality(name: str, task: str, runs_dir: str | Path, train: dict | None = None,
                  **arguments: Any) -> dict[str, float]:
    """Train family ``name`` (its defaults, plus ``arguments``) on the real table for ``task`` and
    compare its test loss with the constant's.

    Returns:
        ``{"model": loss, "constant": loss, "ratio": model / constant}``.

    Raises:
        AssertionError: the ratio is above ``FLOOR[task]``, naming the family, task and losses.

    Example:
        >>> check_quality("mlp", "binary", "runs/quality")["ratio"] < 0.5  # doctest: +SKIP
        True
    """
    from fitwell.pipeline import train as train_run

    frame = quality_table(task)
    config = {"data": {"target": "target", "task": task}, "model": {"name": name, **arguments},
              "train": {"progress": False, **(train or {})},
              "track": {"runs_dir": str(runs_dir), "report": False}, "explain": {"permutation": False}}
    run = train_run(config, data=frame)
    test = pd.read_csv(run.path / "test_predictions.csv")["target"].to_numpy()
    model = run.metrics["rmse" if task == "regression" else "log_loss"]
    constant = constant_loss(task, frame["target"].to_numpy(), test)
    ratio = model / constant
    assert ratio <= FLOOR[task], (f"{name} on {TABLES[task]} ({task}): test loss {model:.4g} is"
                                  f" {ratio:.2f}x the constant prediction's {constant:.4g}; the floor is"
                                  f" {FLOOR[task]}x")
    return {"model": model, "constant": constant, "ratio": ratio}
