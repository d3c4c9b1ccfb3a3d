"""The exported ensemble: preprocessing, members, calibrators and combiner in one run directory.

``ensemble.skops`` holds the fitted objects (scikit-learn's safe format; only fitwell,
scikit-learn, LightGBM, XGBoost, CatBoost and NumPy types are trusted at load), ``preprocess.*`` the shared
Preprocessor, ``ensemble.json`` a readable description. ``load_run`` returns an EnsembleRun for
such a directory, so ``fitwell predict`` and ``fitwell evaluate`` work on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.data.preprocess import Preprocessor
from fitwell.ensemble.features import TreeFeatures, pack
from fitwell.errors import DataError

ENSEMBLE_FILE = "ensemble.skops"
TRUSTED = ("fitwell.", "sklearn.", "numpy.", "builtins.", "lightgbm.", "xgboost.", "catboost.",
           "collections.OrderedDict",
           "functools.partial", "scipy.")


def normalise(proba) -> np.ndarray:
    """float64 rows summing to 1 (a float32 softmax is off by ~1e-7, which log_loss warns about)."""
    proba = np.asarray(proba, dtype=np.float64)
    return proba / proba.sum(axis=1, keepdims=True)


@dataclass
class Member:
    """A fitted member: its input view, estimator and optional probability calibrator."""

    name: str
    view: str  # "nn" or "tree"
    estimator: object
    calibrator: object | None = None
    classes: int = 0  # the run's classes: a column each, also for one no training row held (0: as fitted)

    def output(self, task: str, views: dict[str, np.ndarray]) -> np.ndarray:
        X = views[self.view]
        if task == "regression":
            return np.asarray(self.estimator.predict(X), dtype=np.float64).reshape(-1)
        proba = self.estimator.predict_proba(X)
        if self.classes and np.shape(proba)[1] != self.classes:
            from fitwell.ensemble.members import aligned_proba

            proba = aligned_proba(self.estimator, proba, self.classes)
        proba = normalise(proba)
        return proba if self.calibrator is None else self.calibrator.predict_proba(proba)


@dataclass
class EnsembleModel:
    """Members + combiner. ``output`` is class probabilities or the (scaled) regression target."""

    task: str
    members: list[Member]
    combiner: object
    tree_view: TreeFeatures | None = None

    def views(self, preprocessor: Preprocessor, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        views = {}
        if any(m.view == "nn" for m in self.members):
            views["nn"] = pack(preprocessor.transform(frame))
        if any(m.view == "tree" for m in self.members):
            views["tree"] = self.tree_view.transform(frame)
        return views

    def member_outputs(self, views: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [m.output(self.task, views) for m in self.members]

    def output(self, views: dict[str, np.ndarray]) -> np.ndarray:
        return self.combiner.combine(self.member_outputs(views))

    def save(self, path: Path) -> None:
        import skops.io as sio

        sio.dump({"task": self.task, "members": [m.__dict__ for m in self.members],
                  "combiner": self.combiner, "tree_view": self.tree_view}, path)

    @classmethod
    def load(cls, path: Path) -> EnsembleModel:
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED)]
        if foreign:
            raise DataError(f"{path} holds types fitwell does not trust: {', '.join(foreign)}. fitwell"
                            " loads fitwell, scikit-learn, LightGBM and NumPy types only (skops); an"
                            " ensemble with a member of your own module cannot be loaded from its run"
                            " directory")
        saved = sio.load(path, trusted=untrusted)
        return cls(saved["task"], [Member(**m) for m in saved["members"]], saved["combiner"],
                   saved["tree_view"])


class EnsembleRun:
    """A finished ``fitwell ensemble`` run, with Run's interface (metrics, predict, evaluate).

    Example:
        >>> run = EnsembleRun("runs/breast_cancer_ensemble-20261123-101500-000")  # doctest: +SKIP
        >>> run.predict(frame).head()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, verify: bool = True, model: EnsembleModel | None = None):
        from fitwell.config.load import load_config
        from fitwell.track.bundle import load_run_file
        from fitwell.track.run_dir import RunDir

        self.dir = RunDir(path)
        self.path = self.dir.path
        if verify:
            self.dir.require(self.dir.config, self.dir.preprocess / "preprocess.json",
                             self.dir.preprocess / "preprocess.skops", self.path / ENSEMBLE_FILE)
        self.config = load_run_file(self.dir, self.dir.config, load_config)
        self.preprocessor = self.dir.load_preprocessor()
        self.task = self.preprocessor.task
        # ``model``: the fitted ensemble that was just saved here (no second read of ensemble.skops)
        self.ensemble = model if model is not None else load_run_file(self.dir, self.path / ENSEMBLE_FILE,
                                                                      EnsembleModel.load)

    def __repr__(self) -> str:
        return f"EnsembleRun({str(self.path)!r}, task={self.task!r})"

    @property
    def summary(self) -> dict:
        return self.dir.read_json(self.dir.metrics) if self.dir.metrics.exists() else {}

    @property
    def metrics(self) -> dict[str, float]:
        return self.summary.get("test", {})

    @property
    def classes(self) -> list | None:
        return self.preprocessor.classes_

    def _output(self, frame: pd.DataFrame) -> np.ndarray:
        return self.ensemble.output(self.ensemble.views(self.preprocessor, frame))

    def predict_proba(self, frame) -> np.ndarray:
        from fitwell.track.bundle import read_frame

        if self.task == "regression":
            raise DataError("predict_proba is for classification runs; this run is a regression")
        return self._output(read_frame(frame))

    def predict(self, frame) -> pd.DataFrame:
        from fitwell.track.bundle import prediction_table, read_frame

        frame = read_frame(frame)
        return prediction_table(self.task, self.preprocessor, self._output(frame), frame.index)

    def evaluate(self, frame) -> dict[str, float]:
        from fitwell.track.bundle import labelled_rows, read_frame, score_output

        labelled = labelled_rows(self.preprocessor, read_frame(frame))
        return score_output(self.task, self.preprocessor, labelled, self._output(labelled))
