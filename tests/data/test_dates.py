"""Date columns: the calendar parts a model needs for seasons, paydays and weekends, read the same way
by `fitwell predict` and the exported ONNX graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fitwell.data.dates import DateParts, calendar
from fitwell.serve.bundle import load_run
from fitwell.serve.export import check_export, export_onnx
from tests.serve.test_export import train as train_network
from tests.test_cli import train_preset


def stamps(count: int, seed: int = 0, start: str = "2021-01-01", span_days: int = 3 * 365,
           times: bool = False) -> pd.Series:
    rng = np.random.default_rng(seed)
    out = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, span_days, count), unit="D")
    if times:
        out = out + pd.to_timedelta(rng.integers(0, 24 * 60, count), unit="min")
    return pd.Series(out)


def test_the_calendar_agrees_with_pandas_over_six_centuries():
    when = stamps(100_000, start="1700-01-01", span_days=600 * 365, times=True)
    days = ((when - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy().copy()
    days[:3] = np.nan
    parts = calendar(days)
    assert np.isnan(parts["month"][:3]).all() and np.isnan(parts["hour"][:3]).all()
    assert (parts["month"][3:] == when.dt.month[3:]).all()
    assert (parts["day"][3:] == when.dt.day[3:]).all()
    assert (parts["weekday"][3:] == when.dt.day_of_week[3:]).all()
    assert np.abs(parts["hour"][3:] - (when.dt.hour + when.dt.minute / 60)[3:]).max() < 1e-6


def test_only_parts_that_vary_in_training_become_columns():
    first_of_month = pd.date_range("2020-01-01", periods=30, freq="MS")
    days = ((first_of_month - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy()[:, None]
    parts = DateParts().fit(days)
    assert parts.get_feature_names_out(["billed"]).tolist() == ["billed.month", "billed.weekday"]
    assert parts.transform(days).shape == (30, 2)


def sales(count: int, seed: int = 0, times: bool = False) -> pd.DataFrame:
    """A busy day is a weekend, or December: neither is a range of the day count."""
    when = stamps(count, seed, times=times)
    rng = np.random.default_rng(seed + 1)
    busy = (when.dt.day_of_week >= 5) | (when.dt.month == 12)
    if times:
        busy = busy & (when.dt.hour >= 9)
    return pd.DataFrame({"day": when.dt.strftime("%Y-%m-%d %H:%M" if times else "%Y-%m-%d"),
                         "noise": rng.normal(size=count), "busy": np.where(busy, "yes", "no")})


@pytest.mark.slow
def test_weekends_and_december_are_learned_from_a_date_column(tmp_path):
    frame = sales(1500)
    run, test = train_preset(tmp_path, frame, "busy")
    assert test["roc_auc"] > 0.97
    pre = load_run(run).preprocessor
    assert {"dates__day.month", "dates__day.weekday"} <= set(pre.feature_names())
    # new rows come as text: their day count is read on the training rows' scale (standardised)
    assert np.abs(pre.transform(frame.head(200)).numeric[:, 0]).max() < 3


def test_a_network_reads_the_hour_and_its_onnx_graph_reads_the_date_as_fitwell_does(tmp_path):
    frame = sales(600, seed=3, times=True)
    run = train_network(tmp_path, frame, "busy", "track.report=false")
    assert load_run(run).preprocessor.feature_names() == [
        "numeric__day", "numeric__noise", "dates__day.month", "dates__day.day", "dates__day.weekday",
        "dates__day.hour"]
    new = frame.drop(columns=["busy"]).head(80).copy()
    new.loc[new.index[0], "day"] = "someday"  # missing: every part imputed
    new.loc[new.index[1], "day"] = "1969-12-31 23:30"  # before 1970: negative days
    new.loc[new.index[2], "day"] = "2400-02-29 06:00"  # far out, a leap day
    with pytest.warns(UserWarning, match="not dates"):
        result = check_export(run, export_onnx(run), new)
    assert result["max_difference"] <= 1e-5 and result["labels_equal"] == 1.0
