"""The two input views ensemble members read, both fitted on the train split only.

- ``nn``: fitwell's Preprocessor (clipped, imputed, scaled numbers, one-hot and embedding codes),
  packed as one float32 matrix ``[numbers | codes]`` so scikit-learn's wrappers (bagging,
  AdaBoost, cross_val_predict) can slice rows; fitwell members unpack it by ``num_numeric``.
- ``tree``: raw numbers with missing values kept as NaN, the calendar parts of date columns
  (``fitwell.data.dates``), the TF-IDF components of free-text columns (``fitwell.data.text``)
  and categories as ordinal codes, which is what gradient-boosted trees want (native
  missing-value and categorical handling, as in LightGBM's and HistGradientBoosting's own guides).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import OrdinalEncoder

from fitwell.data.clean import type_columns
from fitwell.data.columns import ColumnPlan
from fitwell.data.dates import DateParts
from fitwell.data.preprocess import Features
from fitwell.data.text import TextComponents


def pack(features: Features) -> np.ndarray:
    """``[numbers | codes]`` as one float32 matrix (codes are small integers, exact in float32)."""
    return np.hstack([features.numeric, features.codes.astype(np.float32)]).astype(np.float32)


def unpack(X: np.ndarray, num_numeric: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    return np.ascontiguousarray(X[:, :num_numeric]), np.ascontiguousarray(X[:, num_numeric:]).astype(np.int64)


class TreeFeatures:
    """Numbers as they are (NaN = missing), the calendar parts of date columns, the TF-IDF
    components of free-text columns, then one ordinal code per categorical column.

    Example:
        >>> view = TreeFeatures(plan).fit(train_frame)  # doctest: +SKIP
        >>> X = view.transform(test_frame); view.categorical_  # doctest: +SKIP
    """

    def __init__(self, plan: ColumnPlan, normalize_strings: bool = True):
        self.plan = plan
        self.normalize_strings = normalize_strings

    def fit(self, frame: pd.DataFrame) -> TreeFeatures:
        typed = type_columns(frame, self.plan, self.normalize_strings)
        self.number_columns_ = self.plan.columns("numeric") + self.plan.columns("boolean")
        self.category_columns_ = self.plan.columns("categorical")
        self.date_columns_ = [c for c in self.plan.dates if c in self.number_columns_]
        self.dates_ = DateParts().fit(typed[self.date_columns_]) if self.date_columns_ else None
        self.texts_ = [TextComponents().fit(typed[[c]]) for c in self.text_columns]
        self.encoder_ = None
        if self.category_columns_:
            # unknown and missing categories are NaN: both trees send them down the missing branch
            self.encoder_ = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                           encoded_missing_value=np.nan)
            self.encoder_.fit(typed[self.category_columns_])
        return self

    @property
    def categorical_(self) -> list[int]:
        """Column indices of the categorical codes in ``transform``'s output."""
        texts = sum(t.width_ for t in getattr(self, "texts_", []))
        start = len(self.number_columns_) + len(self.date_parts_) + texts
        return list(range(start, start + len(self.category_columns_)))

    @property
    def text_columns(self) -> list[str]:
        return self.plan.columns("text")

    @property
    def date_parts_(self) -> list[tuple[int, str]]:
        """(index in ``date_columns_``, part) of each calendar column; none in runs saved before."""
        dates = getattr(self, "dates_", None)
        return [] if dates is None else list(dates.parts_)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        typed = type_columns(frame, self.plan, self.normalize_strings)
        blocks = [typed[self.number_columns_].to_numpy(dtype=np.float64)]
        if self.date_parts_:
            blocks.append(self.dates_.transform(typed[self.date_columns_]))
        for column, text in zip(self.text_columns, getattr(self, "texts_", []), strict=True):
            blocks.append(text.transform(typed[[column]]))
        if self.encoder_ is not None and len(typed) == 0:  # no rows (an empty validation split)
            blocks.append(np.zeros((0, len(self.category_columns_))))
        elif self.encoder_ is not None:
            codes = self.encoder_.transform(typed[self.category_columns_])
            blocks.append(np.asarray(codes, dtype=np.float64))
        return np.hstack(blocks) if blocks else np.zeros((len(typed), 0))

    def __getstate__(self) -> dict:  # skops stores plain data; the plan is a dataclass
        state = dict(self.__dict__)
        state["plan"] = self.plan.to_dict()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["plan"] = ColumnPlan.from_dict(state["plan"])
        self.__dict__.update(state)
