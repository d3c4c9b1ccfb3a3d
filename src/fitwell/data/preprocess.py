"""Fitted preprocessing: imputation, outlier clipping, encoding and scaling, fitted on the
training rows only and persisted with skops (never bare pickle).

The output is two blocks: float32 numbers (numeric columns, the calendar parts of date columns,
the TF-IDF components of free-text columns, boolean and one-hot columns) and int64 codes for
high-cardinality categories (0 is the "unknown" bucket, for unseen or missing values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

from fitwell.config.schema import PreprocessConfig
from fitwell.data.clean import type_columns
from fitwell.data.columns import ColumnPlan
from fitwell.data.dates import DateParts
from fitwell.data.text import TextComponents
from fitwell.errors import DataError

MISSING = "__missing__"
TRUSTED_PREFIXES = ("fitwell.", "sklearn.", "numpy.", "builtins.")


class OutlierClipper(TransformerMixin, BaseEstimator):
    """Clip each column to bounds learned on the training data; NaN passes through.

    Args:
        method: "quantile" (bounds are the given quantiles), "iqr" (Tukey fences) or "none".
        quantiles: low and high quantile for ``method="quantile"``.
        iqr_factor: fence width in IQRs for ``method="iqr"``.

    Example:
        >>> OutlierClipper("quantile", (0.0, 0.5)).fit([[1.0], [2.0], [9.0]]).transform([[9.0]])
        array([[2.]])
    """

    def __init__(self, method: str = "none", quantiles=(0.01, 0.99), iqr_factor: float = 1.5):
        self.method = method
        self.quantiles = quantiles
        self.iqr_factor = iqr_factor

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.n_features_in_ = X.shape[1]
        if self.method == "quantile":
            low, high = np.nanquantile(X, list(self.quantiles), axis=0)
        elif self.method == "iqr":
            q1, q3 = np.nanquantile(X, [0.25, 0.75], axis=0)
            low, high = q1 - self.iqr_factor * (q3 - q1), q3 + self.iqr_factor * (q3 - q1)
        else:
            low = np.full(X.shape[1], -np.inf)
            high = np.full(X.shape[1], np.inf)
        self.lower_, self.upper_ = np.asarray(low, float), np.asarray(high, float)
        self.n_clipped_ = self._count(X)
        return self

    def _count(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ((X < self.lower_) | (X > self.upper_)).sum(axis=0)

    def transform(self, X):
        check_is_fitted(self, "lower_")
        X = np.asarray(X, dtype=float)
        return np.clip(X, self.lower_, self.upper_)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features if input_features is not None else
                          [f"x{i}" for i in range(self.n_features_in_)], dtype=object)


class SmoothClipScaler(TransformerMixin, BaseEstimator):
    """RealMLP's robust scaling with smooth clipping (Holzmueller et al., 2024): centre on the
    median, divide by the interquartile range (half the range when that is 0, as RealMLP does),
    then ``x / sqrt(1 + (x / 3)^2)`` -- close to x near the centre, bounded by +-3 far out, so one
    extreme row cannot dominate a network's first layer while the order of the values is kept.

    Example:
        >>> scaler = SmoothClipScaler().fit(np.array([[0.0], [1.0], [2.0], [3.0], [1000.0]]))
        >>> scaler.transform(np.array([[2.0], [1000.0]])).round(3).ravel().tolist()
        [0.0, 3.0]
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.n_features_in_ = X.shape[1]
        low, median, high = np.nanquantile(X, [0.25, 0.5, 0.75], axis=0)
        spread = high - low
        full = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
        # an interquartile range that is rounding noise next to the column's range counts as 0 (a
        # free-text column's later SVD components: 0 on most rows give 5e-17, which scaled rounding
        # noise into values of +-3)
        spread = np.where(spread > 1e-9 * full, spread, np.where(full > 0, full / 2, 1.0))
        self.center_, self.scale_ = np.asarray(median, float), np.asarray(spread, float)
        return self

    def transform(self, X):
        check_is_fitted(self, "center_")
        scaled = (np.asarray(X, dtype=float) - self.center_) / self.scale_
        return scaled / np.sqrt(1.0 + (scaled / 3.0) ** 2)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features if input_features is not None else
                          [f"x{i}" for i in range(self.n_features_in_)], dtype=object)


def build_scaler(name: str, n_rows: int):
    return {
        "robust_smooth_clip": SmoothClipScaler(),
        "standard": StandardScaler(),
        "minmax": MinMaxScaler((0, 1)),
        "minmax_symmetric": MinMaxScaler((-1, 1)),
        "robust": RobustScaler(),
        "quantile": QuantileTransformer(n_quantiles=min(1000, max(n_rows, 10)), output_distribution="normal"),
        "none": FunctionTransformer(feature_names_out="one-to-one"),
    }[name]


@dataclass
class Features:
    """Model inputs: a float32 number block, an int64 code block and the other input blocks
    (``image``, ``tokens``, ``sequence`` + ``sequence_mask``), row-aligned."""

    numeric: np.ndarray
    codes: np.ndarray
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.numeric)


class Preprocessor:
    """Column typing + scikit-learn transformers, fitted on training rows only.

    Args:
        plan: which columns are used and as what kind.
        config: the ``preprocess`` section.
        task: binary, multiclass or regression (decides target handling).
        normalize_strings: trim and case-fold category strings.
        inputs: image / text / sequence blocks (``fitwell.data.inputs``), fitted with the table.

    Example:
        >>> pre = Preprocessor(plan, PreprocessConfig(), "binary").fit(train_frame, y_train)
        >>> features = pre.transform(new_frame)  # doctest: +SKIP
    """

    def __init__(self, plan: ColumnPlan, config: PreprocessConfig, task: str,
                 normalize_strings: bool = True, inputs: list | None = None):
        self.plan = plan
        self.config = config
        self.task = task
        self.normalize_strings = normalize_strings
        self.inputs = list(inputs or [])
        self.privacy_: dict | None = None  # a private run: what it released (fitwell.privacy.preprocess)

    # --- fitting -------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, y: pd.Series) -> Preprocessor:
        typed = type_columns(frame, self.plan, self.normalize_strings)
        cfg = self.config
        numeric = self.plan.columns("numeric")
        boolean = self.plan.columns("boolean")
        categorical = self.plan.columns("categorical")
        counts = {c: typed[c].nunique(dropna=True) for c in categorical}
        self.onehot_columns_ = [c for c in categorical if counts[c] <= cfg.onehot_max_categories]
        self.code_columns_ = [c for c in categorical if counts[c] > cfg.onehot_max_categories]
        cat_fill = "most_frequent" if cfg.impute_categorical == "most_frequent" else "constant"
        parts = []
        if numeric:
            parts.append(("numeric", Pipeline([
                ("clip", OutlierClipper(cfg.outliers, cfg.outlier_quantiles, cfg.iqr_factor)),
                ("impute", SimpleImputer(strategy=cfg.impute_numeric, fill_value=cfg.fill_value,
                                         add_indicator=cfg.missing_indicator,
                                         keep_empty_features=True)),
                ("scale", build_scaler(cfg.scale, len(typed))),
            ]), numeric))
        dates = [c for c in self.plan.dates if c in numeric]
        if dates and DateParts().fit(typed[dates]).parts_:  # month, weekday, ... beside the day count
            parts.append(("dates", Pipeline([
                ("parts", DateParts()),
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("scale", build_scaler(cfg.scale, len(typed))),
            ]), dates))
        for i, column in enumerate(self.plan.columns("text")):  # part names may not hold "__"
            parts.append((f"text{i}", Pipeline([("components", TextComponents()),
                                                ("scale", build_scaler(cfg.scale, len(typed)))]), [column]))
        if boolean:
            parts.append(("boolean", SimpleImputer(strategy="most_frequent",
                                                   keep_empty_features=True), boolean))
        if self.onehot_columns_:
            parts.append(("onehot", Pipeline([
                ("impute", SimpleImputer(strategy=cat_fill, fill_value=MISSING,
                                         keep_empty_features=True)),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                         dtype=np.float32)),
            ]), self.onehot_columns_))
        self.numeric_ = ColumnTransformer(parts, remainder="drop", sparse_threshold=0) if parts else None
        if self.numeric_ is not None:
            self.numeric_.fit(typed)
        self.codes_ = None
        if self.code_columns_:
            self.codes_ = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                         encoded_missing_value=-1, dtype=np.int64)
            self.codes_.fit(typed[self.code_columns_])
        self.cardinalities_ = [len(c) + 1 for c in (self.codes_.categories_ if self.codes_ else [])]
        for block in self.inputs:
            block.fit(frame)
        self._fit_target(y)
        return self

    def _fit_target(self, y: pd.Series) -> None:
        if self.task == "regression":
            values = y.to_numpy(dtype=float)
            scale = self.config.scale_target
            self.target_mean_ = float(values.mean()) if scale else 0.0
            self.target_std_ = (float(values.std()) or 1.0) if scale else 1.0
            self.classes_ = None
        else:
            self.target_mean_, self.target_std_ = 0.0, 1.0
            self.classes_ = None  # classification: set_classes follows; unsupervised: none

    def set_classes(self, classes: list) -> Preprocessor:
        """Class labels in output order (taken from every row: labels are not statistics)."""
        self.classes_ = list(classes)
        return self

    # --- applying ------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> Features:
        """Features for any rows; unseen categories go to the unknown bucket.

        Raises:
            DataError: an input column is missing (named).
        """
        typed = type_columns(frame, self.plan, self.normalize_strings)
        n = len(typed)
        if self.numeric_ is not None:
            numeric = np.asarray(self.numeric_.transform(typed), dtype=np.float32)
        else:
            numeric = np.zeros((n, 0), dtype=np.float32)
        if self.codes_ is not None:
            codes = self.codes_.transform(typed[self.code_columns_])
            codes = np.asarray(codes, dtype=np.int64) + 1
        else:
            codes = np.zeros((n, 0), dtype=np.int64)
        blocks: dict[str, np.ndarray] = {}
        for block in self.inputs:
            blocks.update(block.transform(frame))
        return Features(np.ascontiguousarray(numeric), np.ascontiguousarray(codes), blocks)

    def input_spec(self) -> dict[str, dict]:
        """What the model needs to know of each non-tabular input (shape, vocabulary, ...)."""
        return {block.key: block.spec() for block in self.inputs}

    def input_columns(self) -> list[str]:
        return [c for block in self.inputs for c in block.columns_]

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """Class indices (int64) or the scaled regression target (float32)."""
        if self.task == "regression":
            return ((y.to_numpy(dtype=float) - self.target_mean_) / self.target_std_).astype(np.float32)
        index = {label: i for i, label in enumerate(self.classes_)}
        unknown = sorted({repr(v) for v in y if v not in index})
        if unknown:
            raise DataError(
                f"target {self.plan.target!r} holds labels the model never saw: {', '.join(unknown[:5])};"
                f" known classes: {', '.join(map(repr, self.classes_))}"
            )
        return np.array([index[v] for v in y], dtype=np.int64)

    def decode_regression(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std_ + self.target_mean_

    @property
    def num_numeric(self) -> int:
        return 0 if self.numeric_ is None else len(self.numeric_.get_feature_names_out())

    def feature_names(self) -> list[str]:
        names = [] if self.numeric_ is None else [str(n) for n in self.numeric_.get_feature_names_out()]
        return names + [f"codes__{c}" for c in self.code_columns_]

    def statistics(self) -> dict:
        """What was learned, for reports: imputation values, clip counts, encoders."""
        out: dict = {}
        if self.numeric_ is not None and "numeric" in self.numeric_.named_transformers_:
            pipe = self.numeric_.named_transformers_["numeric"]
            cols = self.plan.columns("numeric")
            out["clipped"] = {c: int(k) for c, k in zip(cols, pipe["clip"].n_clipped_, strict=False) if k}
            out["impute"] = dict(zip(cols, map(float, pipe["impute"].statistics_), strict=False))
        out["onehot_columns"] = self.onehot_columns_
        out["embedding_columns"] = dict(zip(self.code_columns_, self.cardinalities_, strict=False))
        if self.inputs:
            out["inputs"] = [block.describe() for block in self.inputs]
        return out

    # --- persistence ---------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "plan": self.plan.to_dict(), "config": self.config.model_dump(mode="json"),
            "task": self.task, "normalize_strings": self.normalize_strings,
            "classes": _jsonable(self.classes_), "onehot_columns": self.onehot_columns_,
            "code_columns": self.code_columns_, "cardinalities": self.cardinalities_,
            "target_mean": self.target_mean_, "target_std": self.target_std_, "privacy": self.privacy_,
        }
        import skops.io as sio  # slow to import (it indexes scikit-learn), so only here

        from fitwell.files import write_json, write_with

        blocks = {"numeric": self.numeric_, "codes": self.codes_, "inputs": self.inputs}
        write_with(folder / "preprocess.skops", lambda tmp: sio.dump(blocks, tmp))
        write_json(folder / "preprocess.json", meta)

    @classmethod
    def load(cls, folder: Path) -> Preprocessor:
        meta = json.loads((folder / "preprocess.json").read_text())
        path = folder / "preprocess.skops"
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if foreign:
            raise DataError(f"{path} holds types fitwell does not trust: {', '.join(foreign)}")
        blocks = sio.load(path, trusted=untrusted)
        self = cls(ColumnPlan.from_dict(meta["plan"]), PreprocessConfig(**meta["config"]),
                   meta["task"], meta["normalize_strings"])
        self.numeric_, self.codes_ = blocks["numeric"], blocks["codes"]
        self.inputs = list(blocks.get("inputs") or [])
        self.classes_ = meta["classes"]
        self.onehot_columns_, self.code_columns_ = meta["onehot_columns"], meta["code_columns"]
        self.cardinalities_ = meta["cardinalities"]
        self.target_mean_, self.target_std_ = meta["target_mean"], meta["target_std"]
        self.privacy_ = meta.get("privacy")
        return self


def _jsonable(values):
    if values is None:
        return None
    return [v.item() if isinstance(v, np.generic) else v for v in values]
