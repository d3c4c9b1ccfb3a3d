"""A finished single-model run loaded from its directory: predict and evaluate with nothing else.

``fitwell.serve.load_run`` picks this or an ensemble's run by what the directory holds."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from fitwell.config.load import load_config
from fitwell.data.preprocess import Preprocessor
from fitwell.data.sources import read_table
from fitwell.errors import DamagedRun, DataError, UserError
from fitwell.evaluate.metrics import classification_metrics, probabilities, regression_metrics
from fitwell.models.registry import rebuild_model
from fitwell.track.run_dir import RunDir


class Run:
    """A trained run: its config, metrics, model and preprocessing.

    Example:
        >>> run = Run("runs/breast_cancer-20261123-101500-000")  # doctest: +SKIP
        >>> run.metrics["roc_auc"], run.predict(frame).head()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, verify: bool = True):
        self.dir = RunDir(path)
        self.path = self.dir.path
        if verify:  # a run being finished right now has no manifest yet and needs no check
            self.dir.require()
        self.config = load_run_file(self.dir, self.dir.config, load_config)
        self.preprocessor = self.dir.load_preprocessor()
        self.task = self.preprocessor.task
        self.model = load_model(self.dir)
        calibration = self.path / "calibration.json"
        self.temperature = None  # temperature scaling fitted on validation, applied to every output
        if calibration.exists():
            self.temperature = self.dir.read_json(calibration)["temperature"]

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.task!r})"

    @property
    def metrics(self) -> dict[str, float]:
        """Test-split metrics, scored once at the end of training."""
        if not self.dir.metrics.exists():
            return {}
        return self.summary.get("test", {})

    @property
    def summary(self) -> dict:
        """Everything in metrics.json: test and final validation metrics, epochs, stop reason."""
        return self.dir.read_json(self.dir.metrics) if self.dir.metrics.exists() else {}

    @cached_property
    def history(self) -> list[dict]:
        return self.dir.read_history()

    @property
    def classes(self) -> list | None:
        return self.preprocessor.classes_

    def _output(self, frame: pd.DataFrame) -> np.ndarray:
        from fitwell.data.tensors import TensorData, predict_in_chunks

        features = self.preprocessor.transform(frame)
        data = TensorData.from_numpy(features.numeric, features.codes, np.zeros(len(frame), np.float32),
                                     inputs=features.inputs)
        out = predict_in_chunks(self.model, data, chunk=4096 if not features.inputs else 256).numpy()
        return out / self.temperature if self.temperature is not None else out

    def _tta_scores(self, frame: pd.DataFrame, copies: int) -> np.ndarray:
        """Test-time augmentation: probabilities (or regression outputs) averaged over copies."""
        from fitwell.data.augment import predict_with_tta

        features = self.preprocessor.transform(frame)
        temperature = self.temperature or 1.0
        if self.task == "regression":
            def convert(out):
                return out.float()
        else:
            def convert(out):
                return torch.from_numpy(probabilities(self.task, out.float().numpy() / temperature))
        inputs = {k: torch.from_numpy(v) for k, v in features.inputs.items()}
        scores = predict_with_tta(self.model, torch.from_numpy(features.numeric),
                                  torch.from_numpy(features.codes), inputs, self.config.augment, copies,
                                  convert).numpy()
        return scores.reshape(-1) if self.task == "regression" else scores

    def predict_proba(self, frame: pd.DataFrame, tta: int | None = None) -> np.ndarray:
        if self.task == "regression":
            raise DataError("predict_proba is for classification runs; this run is a regression")
        return self._scores(read_frame(frame), tta)

    def predict(self, frame: pd.DataFrame | str | Path, tta: int | None = None) -> pd.DataFrame:
        """Predictions for each row: ``prediction`` and, for classifiers, ``proba_<class>``.

        Args:
            tta: test-time augmentation: average over this many augmented copies (the run's
                ``augment`` flips/affine/crop, or its noise for tables). Default ``augment.tta``
                of the run's config; 0 or 1 = off.
        """
        folder = None if isinstance(frame, pd.DataFrame) else Path(frame).resolve().parent
        frame = read_frame(frame)
        if folder is not None:  # image paths in a file are relative to that file's folder
            frame = self._anchor_image_paths(frame, folder)
        return prediction_table(self.task, self.preprocessor, self._scores(frame, tta), frame.index)

    def _anchor_image_paths(self, frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
        for block in self.preprocessor.inputs:
            column = block.settings.get("column") if block.key == "image" else None
            if column and column in frame.columns:
                def anchored(value):
                    relative = isinstance(value, str) and not Path(value).is_absolute()
                    return str(folder / value) if relative and (folder / value).exists() else value

                frame = frame.assign(**{column: [anchored(v) for v in frame[column]]})
        return frame

    def _scores(self, frame: pd.DataFrame, tta: int | None = None) -> np.ndarray:
        """Class probabilities, or the regression output in the model's (scaled) units."""
        copies = self.config.augment.tta if tta is None else tta
        if copies > 1:
            return self._tta_scores(frame, copies)
        output = self._output(frame)
        return output.reshape(-1) if self.task == "regression" else probabilities(self.task, output)

    def evaluate(self, frame: pd.DataFrame | str | Path) -> dict[str, float]:
        """Test-style metrics on another labelled table (rows with a missing target are skipped)."""
        labelled = labelled_rows(self.preprocessor, read_frame(frame))
        return score_output(self.task, self.preprocessor, labelled, self._scores(labelled))


def load_run_file(run_dir: RunDir, path: Path, load):
    """``load(path)``, with any failure reported as a DamagedRun naming the file."""
    try:
        return load(path)
    except UserError:  # already says what is wrong (a damaged file, types fitwell does not trust)
        raise
    except Exception as err:
        raise DamagedRun(f"{path} cannot be read ({type(err).__name__}: {str(err)[:200]}); the file is"
                         f" damaged. {run_dir.advice()}") from err


def load_model(run_dir: RunDir) -> torch.nn.Module:
    """The model of ``model.json`` with the weights of ``model.safetensors`` (strict), in eval mode."""
    spec = run_dir.read_json(run_dir.model_spec)
    if not isinstance(spec, dict) or "name" not in spec or not isinstance(spec.get("kwargs"), dict):
        raise DamagedRun(f"{run_dir.model_spec} does not describe a model (needs name and kwargs)."
                         f" {run_dir.advice()}")
    model = load_run_file(run_dir, run_dir.model_spec, lambda _: rebuild_model(spec))
    weights = load_run_file(run_dir, run_dir.model, load_file)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise DamagedRun(f"{run_dir.model} does not fit the model that {run_dir.model_spec.name} describes"
                         f" ({str(err).splitlines()[0]}). {run_dir.advice()}") from err
    return model.eval()


def prediction_table(task: str, pre: Preprocessor, scores: np.ndarray, index) -> pd.DataFrame:
    """``prediction`` (+ ``proba_<class>``) from probabilities or a scaled regression output."""
    if task == "regression":
        return pd.DataFrame({"prediction": pre.decode_regression(scores.reshape(-1))}, index=index)
    labels = np.asarray(pre.classes_, dtype=object)[scores.argmax(axis=1)]
    out = pd.DataFrame({"prediction": labels}, index=index)
    for i, label in enumerate(pre.classes_):
        out[f"proba_{label}"] = scores[:, i]
    return out


def labelled_rows(pre: Preprocessor, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with a target value, or a DataError naming the target column."""
    target = pre.plan.target
    if target not in frame.columns:
        raise DataError(f"the labelled data has no target column {target!r}; evaluate needs it")
    labelled = frame.loc[frame[target].notna()]
    if len(labelled) == 0:
        raise DataError(f"no row of the labelled data has a value in {target!r}")
    return labelled


def score_output(task: str, pre: Preprocessor, labelled: pd.DataFrame,
                 scores: np.ndarray) -> dict[str, float]:
    target = labelled[pre.plan.target]
    if task == "regression":
        return regression_metrics(target.to_numpy(dtype=float), pre.decode_regression(scores.reshape(-1)))
    return classification_metrics(pre.encode_target(target), scores)


def read_frame(data) -> pd.DataFrame:
    """A DataFrame as it is, or the table in a CSV/Parquet/JSONL file."""
    return data if isinstance(data, pd.DataFrame) else read_table(data)
