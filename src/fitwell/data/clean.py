"""Row-level cleaning that needs no fitted statistics: typing, string tidying, duplicates,
missing targets. Statistic-based cleaning (imputation, clipping) lives in ``preprocess``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandas.api.types as ptypes

from fitwell.data.columns import BOOL_WORDS, ColumnPlan, to_days, to_numbers
from fitwell.errors import DataError


@dataclass
class CleanReport:
    missing_target_rows: list[int] = field(default_factory=list)
    duplicate_rows: int = 0
    notes: list[str] = field(default_factory=list)


def tidy_text(series: pd.Series) -> pd.Series:
    """Trim and case-fold strings; empty strings become missing."""
    tidied = series.astype("object").map(lambda v: v.strip().casefold() if isinstance(v, str) else v)
    return tidied.where(tidied.notna() & (tidied != ""), np.nan).astype("object")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def unusable_numbers(name: str, original: pd.Series, numbers: pd.Series,
                     report: Callable[[str], None]) -> pd.Series:
    """Numbers a float32 tensor cannot hold (infinite, or beyond +-3.4e38) and text that is not a
    number become missing, and ``report`` says how many, in which column, from which row."""
    huge = numbers.notna() & ~(numbers.abs() <= FLOAT32_MAX)
    if huge.any():
        first = numbers.index[huge.to_numpy()][0]
        report(f"column {name!r}: {int(huge.sum())} values are infinite or beyond float32's range (+-3.4e38)"
               f" (first at row {first}: {numbers[first]!r}); they are treated as missing")
        numbers = numbers.where(~huge)
    words = original.notna() & numbers.isna() & ~huge
    if words.any() and not ptypes.is_numeric_dtype(original):
        first = original.index[words.to_numpy()][0]
        report(f"column {name!r}: {int(words.sum())} of {len(original)} values are not numbers (first at row"
               f" {first}: {original[first]!r}); they are treated as missing")
    return numbers


def unreadable_dates(name: str, original: pd.Series, report: Callable[[str], None]) -> pd.Series:
    """A date column as days since 1970 (``to_days``); ``report`` hears how many values are not
    dates (they become missing), in which column, from which row."""
    days = to_days(original)
    bad = original.notna() & days.isna()
    if bad.any():
        first = original.index[bad.to_numpy()][0]
        report(f"column {name!r}: {int(bad.sum())} of {len(original)} values are not dates (first at row"
               f" {first}: {original[first]!r}); they are treated as missing")
    return days.astype("float64")


def warn(text: str) -> None:
    warnings.warn(text, UserWarning, stacklevel=3)


def type_columns(frame: pd.DataFrame, plan: ColumnPlan, normalize_strings: bool = True,
                 report: Callable[[str], None] = warn) -> pd.DataFrame:
    """Only the plan's input columns, each in the dtype its kind needs; ``report`` hears of values
    that had to become missing (a data note in training, a warning at prediction).

    Raises:
        DataError: an input column the model needs is missing, named.
    """
    missing = [c for c in plan.inputs if c not in frame.columns]
    if missing:
        raise DataError(
            f"input column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} missing"
            f" from the data; the model was trained with columns: {', '.join(plan.inputs)}"
        )
    out = {}
    for name, kind in plan.kinds.items():
        series = frame[name]
        if kind == "numeric" and name in plan.dates:
            out[name] = unreadable_dates(name, series, report)
        elif kind == "numeric":
            out[name] = unusable_numbers(name, series, to_numbers(series), report)
        elif kind == "boolean":
            out[name] = _to_bool(series)
        elif kind == "text":  # words are read by TfidfVectorizer (fitwell.data.text)
            out[name] = series.astype("object").where(series.notna(), np.nan)
        else:
            text = series.astype("object").map(
                lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))
            text = text.where(text.notna(), np.nan).astype("object")
            out[name] = tidy_text(text) if normalize_strings else text
    return pd.DataFrame(out, index=frame.index)


def _to_bool(series: pd.Series) -> pd.Series:
    def convert(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return np.nan
        if isinstance(value, str):
            return BOOL_WORDS.get(value.strip().lower(), np.nan)
        return float(bool(value))

    return series.astype("object").map(convert).astype("float64")


def clean_rows(
    frame: pd.DataFrame, target: str, drop_duplicates: bool
) -> tuple[pd.DataFrame, CleanReport]:
    """Drop rows whose target is missing and exact duplicate rows; report both."""
    report = CleanReport()
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the data")
    target_values = frame[target]
    if not isinstance(target_values.dtype, pd.CategoricalDtype) and target_values.dtype == object:
        target_values = target_values.map(lambda v: v.strip() if isinstance(v, str) else v)
        target_values = target_values.where(target_values != "", None)
        frame = frame.assign(**{target: target_values})
    missing = frame[target].isna()
    if missing.any():
        report.missing_target_rows = [int(i) for i in np.flatnonzero(missing.to_numpy())]
        first = ", ".join(str(frame.index[i]) for i in report.missing_target_rows[:5])
        report.notes.append(
            f"dropped {int(missing.sum())} rows with a missing target {target!r} (rows {first}"
            + (", ..." if missing.sum() > 5 else "") + ")"
        )
        frame = frame.loc[~missing]
    if len(frame) == 0:
        raise DataError(f"every row has a missing target {target!r}; nothing to train on")
    if drop_duplicates:
        duplicated = frame.duplicated(keep="first")
        report.duplicate_rows = int(duplicated.sum())
        if report.duplicate_rows:
            report.notes.append(f"dropped {report.duplicate_rows} exact duplicate rows")
            frame = frame.loc[~duplicated]
    return frame, report
