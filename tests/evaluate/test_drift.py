"""Drift against a training reference: quiet on a random split, loud on each injected shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fitwell.config.schema import MonitorConfig
from fitwell.evaluate.drift import compare, reference_profile

KINDS = {"income": "number", "age": "number", "visits": "number", "plan": "category", "region": "category"}


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.lognormal(10, 0.5, rows),
        "age": rng.normal(40, 12, rows).round(),
        "visits": rng.poisson(3, rows).astype(float),  # few distinct values: ties everywhere
        "plan": rng.choice(["basic", "pro", "team", "free"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "region": rng.choice([f"r{i}" for i in range(12)], rows),
    })
    frame.loc[rng.random(rows) < 0.05, "income"] = np.nan
    return frame


@pytest.fixture(scope="module")
def reference():
    return reference_profile(table(20_000, 0), KINDS, None, "binary")


@pytest.mark.parametrize("rows", [1_000, 10_000, 100_000])
def test_a_random_sample_of_the_same_population_raises_no_alarm(reference, rows):
    result = compare(reference, table(rows, 1), None, MonitorConfig())
    assert result["drifted_columns"] == [], result["columns"]


@pytest.mark.parametrize("shift, column", [
    ("mean_0.5_sd", "age"),
    ("mean_0.25_sd", "age"),
    ("category_doubled", "plan"),
    ("missing_plus_20", "income"),
    ("new_category", "region"),
])
def test_each_injected_shift_is_found_in_its_column_only(reference, shift, column):
    new = table(5_000, 2)
    if shift.startswith("mean"):
        new["age"] += float(shift.split("_")[1]) * 12
    elif shift == "category_doubled":  # "team": 20% of rows -> 40%
        rows = new.index[new["plan"] != "team"]
        new.loc[np.random.default_rng(3).choice(rows, 1000, replace=False), "plan"] = "team"
    elif shift == "missing_plus_20":
        new.loc[new.sample(frac=0.2, random_state=4).index, "income"] = np.nan
    else:
        new.loc[new.sample(frac=0.05, random_state=5).index, "region"] = "atlantis"
    result = compare(reference, new, None, MonitorConfig())
    assert result["drifted_columns"] == [column], result["columns"][column]


def test_a_missing_column_is_drift(reference):
    result = compare(reference, table(500, 6).drop(columns=["plan"]), None, MonitorConfig())
    assert result["drifted_columns"] == ["plan"]


def test_integer_columns_keep_real_values_in_the_reference():
    profile = reference_profile(table(2_000, 7), KINDS, None, "binary")
    assert set(profile["columns"]["visits"]["quantiles"]) <= set(table(2_000, 7)["visits"])


def test_a_date_column_is_profiled_as_days_and_a_shift_of_a_year_is_drift():
    """Dates are compared as the model reads them (days since 1970), not as numbers they are not
    (which made every value missing on both sides, so no shift could ever show)."""
    rng = np.random.default_rng(8)

    def dated(rows, start):
        days = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
        return pd.DataFrame({"signed": days.strftime("%Y-%m-%d")})

    reference = reference_profile(dated(5_000, "2021-01-01"), {"signed": "date"}, None, "binary")
    assert reference["columns"]["signed"]["missing"] == 0
    same, later = (compare(reference, dated(2_000, start), None, MonitorConfig())["drifted_columns"]
                   for start in ("2021-01-01", "2022-01-01"))
    assert same == [] and later == ["signed"]
