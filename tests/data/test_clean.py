import numpy as np
import pandas as pd
import pytest

from fitwell.data.clean import clean_rows, type_columns
from fitwell.data.columns import ColumnPlan


def test_missing_targets_and_duplicates_are_dropped_and_reported():
    frame = pd.DataFrame({"a": [1, 1, 2, 3, 4], "y": [0, 0, None, 1, " "]})
    cleaned, report = clean_rows(frame, "y", drop_duplicates=True)
    assert cleaned["a"].tolist() == [1, 3]
    assert report.missing_target_rows == [2, 4] and report.duplicate_rows == 1
    assert any("2 rows with a missing target" in n for n in report.notes)
    assert any("1 exact duplicate rows" in n for n in report.notes)


def test_strings_tidied_and_numbers_coerced():
    plan = ColumnPlan("y", kinds={"c": "categorical", "n": "numeric", "b": "boolean"})
    frame = pd.DataFrame({"c": [" Red", "RED ", "", None], "n": ["1,200", " 3.5", "x", None],
                          "b": ["Yes", "no", None, "TRUE"]})
    with pytest.warns(UserWarning, match=r"column 'n': 1 of 4 values are not numbers \(first at row 2"):
        typed = type_columns(frame, plan)
    assert typed["c"].tolist()[:2] == ["red", "red"] and typed["c"].isna().tolist()[2:] == [True, True]
    assert typed["n"].tolist()[:2] == [1200.0, 3.5] and np.isnan(typed["n"].iloc[2])
    assert typed["b"].tolist()[:2] == [1.0, 0.0] and typed["b"].iloc[3] == 1.0
