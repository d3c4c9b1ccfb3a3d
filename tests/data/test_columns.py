import numpy as np
import pandas as pd
import pytest

from fitwell.data.columns import infer_columns, infer_task
from fitwell.errors import ConfigError, DataError


def test_kinds_are_inferred(mixed_frame):
    mixed_frame["amount"] = [f" {v:,.2f} " for v in np.linspace(1000, 5000, len(mixed_frame))]
    plan = infer_columns(mixed_frame, "label")
    assert plan.kinds == {"x1": "numeric", "x2": "numeric", "color": "categorical",
                          "city": "categorical", "flag": "boolean", "amount": "numeric"}
    assert plan.dropped["customer_id"].startswith("ID-like")
    assert plan.dropped["const"].startswith("constant")
    assert any("numbers stored as text" in note for note in plan.notes)
    assert any("dropped column 'customer_id'" in note for note in plan.notes)


def test_declared_kinds_win(mixed_frame):
    plan = infer_columns(mixed_frame, "label", {"x2": "categorical", "city": "drop"}, drop=["flag"])
    assert plan.kinds["x2"] == "categorical"
    assert "city" in plan.dropped and "flag" in plan.dropped


def test_strings_declared_numeric_name_column_and_row():
    frame = pd.DataFrame({"size": ["1", "2", "big", "4"] * 5, "y": [0, 1] * 10})
    with pytest.raises(DataError, match=r"column 'size' is declared numeric .* row 2: 'big'"):
        infer_columns(frame, "y", {"size": "numeric"})


def test_unknown_declared_column_suggests(mixed_frame):
    with pytest.raises(ConfigError, match=r"data\.columns: column 'colour' .*Did you mean 'color'"):
        infer_columns(mixed_frame, "label", {"colour": "categorical"})


@pytest.mark.parametrize("values, expected", [
    ([0, 1] * 10, "binary"),
    (["cat", "dog", "cat", "bird"] * 5, "multiclass"),
    ([True, False] * 10, "binary"),
    (list(np.linspace(0, 1, 20)), "regression"),
    (list(range(40)), "regression"),  # many integer values: a count, not classes
    ([1, 2, 3] * 7, "multiclass"),
    ([1, 2, 3] * 5, "multiclass"),  # 5 rows a value
    ([3, 7, 12, 19, 23, 30, 33, 41, 44, 2, 5, 8, 23, 33, 60, 71, 88], "regression"),  # a chart position
])
def test_task_inference(values, expected):
    assert infer_task(pd.Series(values), "auto", 20, "y") == expected


def test_whole_numbers_with_too_few_rows_a_value_are_numbers_and_the_run_says_so(tmp_path):
    """tidyr's billboard, target wk30: 16 chart positions in the 20-odd rows that have one were read
    as 16 classes and every split failed (fewer than 3 rows a class); they are numbers to predict."""
    import json

    from fitwell.api import train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "z": rng.normal(size=200)})
    frame["position"] = np.nan
    frame.loc[:39, "position"] = np.round(20 + 5 * frame.loc[:39, "x"]).clip(1, 40)
    frame.to_csv(tmp_path / "chart.csv", index=False)
    run = train({"data": {"source": str(tmp_path / "chart.csv"), "target": "position"},
                 "train": {"epochs": 2, "progress": False},
                 "track": {"runs_dir": str(tmp_path / "runs"), "report": False}})
    assert run.task == "regression"
    notes = json.loads((run.path / "data.json").read_text())["notes"]
    assert any("read as numbers to predict" in n for n in notes), notes


def test_one_class_target_is_an_error():
    with pytest.raises(DataError, match=r"target 'y' has one class \(1\) in all 10 rows"):
        infer_task(pd.Series([1] * 10), "auto", 20, "y")


def test_set_task_is_checked():
    with pytest.raises(DataError, match="data.task is binary but target 'y' has 3 classes"):
        infer_task(pd.Series([0, 1, 2] * 4), "binary", 20, "y")


def test_date_columns_are_read_as_days_not_dropped_as_ids():
    """A column of dates has a distinct value per row, which made it look like an ID; it is a
    number of days since 1970 (ISO, slashes, with a time of day, or pandas datetimes), and its
    values that are not dates become missing with a note naming the column and the first row."""
    from fitwell.data.clean import type_columns

    days = pd.date_range("2020-01-01", periods=40, freq="D")
    frame = pd.DataFrame({
        "iso": days.strftime("%Y-%m-%d"),
        "us": days.strftime("%m/%d/%Y"),
        "stamp": days.strftime("%Y-%m-%d %H:%M"),
        "native": days,
        "code": [f"A-{i:03d}" for i in range(40)],  # an ID, not a date
        "y": np.arange(40) % 2,
    })
    plan = infer_columns(frame, "y")
    assert plan.dates == ["iso", "us", "stamp", "native"]
    assert all(plan.kinds[c] == "numeric" for c in plan.dates) and "code" in plan.dropped
    notes = []
    frame.loc[3, "iso"] = "not yet"
    typed = type_columns(frame, plan, report=notes.append)
    expected = (days - pd.Timestamp("1970-01-01")).days.to_numpy(dtype=float)
    for column in ("us", "stamp", "native"):
        np.testing.assert_allclose(typed[column], expected)
    assert np.isnan(typed["iso"][3]) and typed["iso"][4] == expected[4]
    assert notes == ["column 'iso': 1 of 40 values are not dates (first at row 3: 'not yet'); they are"
                     " treated as missing"]
    assert plan.from_dict(plan.to_dict()).dates == plan.dates
    assert plan.from_dict({"target": "y", "kinds": {}, "dropped": {}}).dates == []  # older runs
