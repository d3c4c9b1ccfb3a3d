"""Infer what each column is (numeric, categorical, boolean, date, free text, ID-like, constant) and
the task."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from fitwell.data.text import looks_like_text
from fitwell.errors import ConfigError, DataError, did_you_mean

BOOL_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "y": 1.0, "n": 0.0, "t": 1.0, "f": 0.0}
ID_NAME = re.compile(r"(^id$|^id_|_id$|uuid|guid|^key$|^index$|^row_?num)", re.IGNORECASE)
NUMERIC_SHARE = 0.95  # a text column whose values parse as numbers this often is numeric


@dataclass
class ColumnPlan:
    """The fate of every column: used as a kind, or dropped with a reason."""

    target: str
    kinds: dict[str, str] = field(default_factory=dict)  # column -> numeric|categorical|boolean|text
    dropped: dict[str, str] = field(default_factory=dict)  # column -> reason
    notes: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)  # numeric columns read from dates (days since 1970)

    def columns(self, kind: str) -> list[str]:
        return [c for c, k in self.kinds.items() if k == kind]

    @property
    def inputs(self) -> list[str]:
        return list(self.kinds)

    def to_dict(self) -> dict:
        return {"target": self.target, "kinds": self.kinds, "dropped": self.dropped, "dates": self.dates}

    @classmethod
    def from_dict(cls, data: dict) -> ColumnPlan:
        return cls(target=data["target"], kinds=dict(data["kinds"]), dropped=dict(data["dropped"]),
                   dates=list(data.get("dates", [])))  # runs saved before dates were read have none


def to_numbers(series: pd.Series) -> pd.Series:
    """Numbers from text: trimmed, thousands separators removed; what does not parse is NaN."""
    if ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series):
        return series.astype("float64")
    text = series.astype("object").where(series.notna())
    cleaned = text.map(lambda v: v.strip().replace(",", "") if isinstance(v, str) else v)
    return pd.to_numeric(cleaned, errors="coerce").astype("float64")


DATE_TEXT = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                       r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")


def to_days(series: pd.Series) -> pd.Series:
    """Dates (text like 2013-07-01, 07/01/2013 or 2013-07-01 14:30, or datetime values) as days
    since 1970-01-01, with the time of day as a fraction; what does not parse is NaN. Numbers are
    days already (a column typed once, typed again) and pass through.

    Example:
        >>> to_days(pd.Series(["1970-01-02", "1970-01-01 12:00", "soon"])).tolist()
        [1.0, 0.5, nan]
    """
    import warnings

    if ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series):
        return series.astype("float64")  # to_datetime would read them as nanoseconds

    with warnings.catch_warnings():  # "could not infer format": each value is parsed on its own
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
    return (parsed - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)


def _looks_like_dates(series: pd.Series) -> bool:
    """Text columns whose values are dates (95% of them): kept as numbers, not dropped as IDs."""
    if ptypes.is_datetime64_any_dtype(series):
        return True
    values = series.dropna()
    if not is_text(series) or len(values) == 0:
        return False
    sample = values.sample(min(len(values), 200), random_state=0).astype(str)
    if sample.map(lambda v: bool(DATE_TEXT.match(v))).mean() < NUMERIC_SHARE:
        return False
    return to_days(sample).notna().mean() >= NUMERIC_SHARE


def is_text(series: pd.Series) -> bool:
    return not ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series)


def _looks_boolean(series: pd.Series) -> bool:
    if ptypes.is_bool_dtype(series):
        return True
    values = series.dropna().unique()
    if len(values) != 2:
        return False
    if ptypes.is_numeric_dtype(series):
        return set(np.asarray(values, dtype=float)) == {0.0, 1.0}
    return all(isinstance(v, str) and v.strip().lower() in BOOL_WORDS for v in values)


def _looks_like_id(name: str, series: pd.Series) -> bool:
    values = series.dropna()
    if len(values) < 10 or values.nunique() < 0.95 * len(values):
        return False
    if is_text(series):
        return to_numbers(values).notna().mean() < NUMERIC_SHARE or bool(ID_NAME.search(name))
    if ptypes.is_integer_dtype(series) or (values == values.round()).all():
        if ID_NAME.search(name):
            return True
        ordered = np.sort(values.to_numpy(dtype=float))
        return values.nunique() == len(values) and bool(np.all(np.diff(ordered) == 1))
    return False


def _infer_one(plan: ColumnPlan, name, series: pd.Series) -> None:
    """The kind of one undeclared column, or why it is dropped."""
    distinct = series.nunique(dropna=True)
    if distinct <= 1:
        plan.dropped[name] = f"constant ({distinct} distinct value)"
    elif _looks_like_dates(series):
        plan.kinds[name] = "numeric"
        plan.dates.append(name)
        plan.notes.append(f"column {name!r}: dates, read as days since 1970-01-01")
    elif _looks_boolean(series):
        plan.kinds[name] = "boolean"
    elif is_text(series) and looks_like_text(series):
        plan.kinds[name] = "text"
        plan.notes.append(f"column {name!r}: free text, read as TF-IDF components")
    elif _looks_like_id(str(name), series):
        plan.dropped[name] = f"ID-like ({distinct} distinct values in {series.notna().sum()} rows)"
    elif not is_text(series):
        plan.kinds[name] = "numeric"
    else:
        parsed = to_numbers(series)
        share = parsed.notna().sum() / max(series.notna().sum(), 1)
        if share >= NUMERIC_SHARE:
            plan.kinds[name] = "numeric"
            # the values that are not numbers are counted when the column is typed (clean.py)
            plan.notes.append(f"column {name!r}: numbers stored as text, converted")
        else:
            plan.kinds[name] = "categorical"


def infer_columns(
    frame: pd.DataFrame,
    target: str,
    declared: dict[str, str] | None = None,
    drop: list[str] | None = None,
    elsewhere: dict[str, str] | None = None,
) -> ColumnPlan:
    """Decide each column's kind; declared kinds (``data.columns``) win over inference.
    ``elsewhere`` maps columns read by an image / text / sequence input to that input's name.

    Raises:
        ConfigError: a declared or dropped column is not in the table.
        DataError: a column declared numeric holds text that is not a number.
    """
    declared = dict(declared or {})
    for key, names in (("data.columns", list(declared)), ("data.drop", list(drop or []))):
        for name in names:
            if name not in frame.columns:
                raise ConfigError(
                    f"{key}: column {name!r} is not in the data.{did_you_mean(name, frame.columns)}"
                    f" Columns: {', '.join(map(str, frame.columns))}"
                )
    plan = ColumnPlan(target=target)
    for name in frame.columns:
        if name == target or name in (elsewhere or {}):
            continue
        kind = declared.get(name)
        if name in (drop or []) or kind == "drop":
            plan.dropped[name] = "dropped by config"
        elif kind == "id":
            plan.dropped[name] = "declared ID"
        elif kind == "numeric":
            _check_declared_numeric(name, frame[name])
            plan.kinds[name] = "numeric"
        elif kind in ("categorical", "boolean", "text"):
            plan.kinds[name] = kind
        else:
            _infer_one(plan, name, frame[name])
    for name, reason in plan.dropped.items():
        plan.notes.append(f"dropped column {name!r}: {reason}")
    for name, reason in (elsewhere or {}).items():
        plan.dropped[name] = reason
    if not plan.kinds and not elsewhere:
        raise DataError(
            f"no usable input columns are left besides the target {target!r}"
            f" (dropped: {', '.join(f'{k} ({v})' for k, v in plan.dropped.items()) or 'none'});"
            " declare column kinds under data.columns"
        )
    return plan


def _check_declared_numeric(name: str, series: pd.Series) -> None:
    if not is_text(series):
        return
    parsed = to_numbers(series)
    bad = series.notna() & parsed.isna()
    if bad.any():
        row = bad.idxmax()
        raise DataError(
            f"column {name!r} is declared numeric (data.columns.{name}) but {int(bad.sum())} of its"
            f" values are not numbers, first at row {row}: {series[row]!r}. Clean those values or"
            f" declare it categorical (data.columns.{name}: categorical)"
        )


ROWS_A_CLASS = 5  # whole numbers read as classes need this many rows a value on average


def infer_task(y: pd.Series, task: str, max_classes: int, target: str, note=None) -> str:
    """binary / multiclass / regression from the target values, or check the one that was set.
    Whole numbers of up to ``max_classes`` values are classes when each has ``ROWS_A_CLASS`` rows
    on average; a chart position seen in 20 rows with 16 values is a number to predict (as classes,
    every split failed). ``note`` is told when that rule made it regression.

    Raises:
        DataError: the target has one class, or the set task does not fit the values.
    """
    values = y.dropna()
    distinct = values.nunique()
    if task == "auto":
        if is_text(values) or ptypes.is_bool_dtype(values):
            task = "binary" if distinct == 2 else "multiclass"
        else:
            numbers = values.astype(float)
            whole = bool((numbers == numbers.round()).all())
            few = distinct > 2 and len(values) < ROWS_A_CLASS * distinct
            if whole and distinct <= max_classes and not few:
                task = "binary" if distinct == 2 else "multiclass"
            else:
                task = "regression"
            if whole and distinct <= max_classes and few and note:
                note(f"target {target!r}: {distinct} whole-number values in {len(values)} rows (under"
                     f" {ROWS_A_CLASS} rows a value) are read as numbers to predict (regression); set"
                     " data.task: multiclass to classify them")
    if task == "regression":
        if is_text(values):
            raise DataError(
                f"target {target!r} holds text but data.task is regression; use a classification task"
            )
        if distinct < 2:
            raise DataError(f"target {target!r} has one value in every row; nothing to learn")
        return task
    if distinct < 2:
        shown = values.iloc[0] if len(values) else None
        shown = shown.item() if isinstance(shown, np.generic) else shown
        raise DataError(
            f"target {target!r} has one class ({shown!r}) in all {len(values)} rows; a classifier"
            " needs at least two. Check data.target, or the filtering that made this file"
        )
    if task == "binary" and distinct != 2:
        raise DataError(
            f"data.task is binary but target {target!r} has {distinct} classes; set data.task: multiclass"
        )
    return task
