import numpy as np
import pandas as pd
import pytest

from fitwell.config import SplitConfig
from fitwell.data.split import split_rows
from fitwell.errors import ConfigError, DataError


def _frame(n=200):
    rng = np.random.default_rng(1)
    return pd.DataFrame({"g": rng.integers(0, 20, n), "t": rng.permutation(n), "x": rng.normal(size=n)})


def test_fractions_disjoint_and_complete():
    frame = _frame()
    y = np.array([0] * 150 + [1] * 50)
    split = split_rows(frame, y, SplitConfig(), "binary", seed=0)
    assert split.sizes() == {"train": 140, "val": 30, "test": 30}
    every = np.concatenate([split.train, split.val, split.test])
    assert sorted(every) == list(range(200))


def test_stratified_keeps_class_shares():
    y = np.array([0] * 180 + [1] * 20)
    split = split_rows(_frame(), y, SplitConfig(), "binary", seed=3)
    for part in (split.train, split.val, split.test):
        assert y[part].mean() == pytest.approx(0.1, abs=0.02)


def test_seeded():
    y = np.zeros(200)
    a = split_rows(_frame(), y, SplitConfig(method="random"), "regression", seed=0)
    b = split_rows(_frame(), y, SplitConfig(method="random"), "regression", seed=0)
    c = split_rows(_frame(), y, SplitConfig(method="random"), "regression", seed=1)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_group_split_never_shares_a_group():
    frame = _frame()
    split = split_rows(frame, np.zeros(200), SplitConfig(method="group", group_column="g"),
                       "regression", seed=0)
    groups = [set(frame["g"].to_numpy()[part]) for part in (split.train, split.val, split.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])


def test_time_split_is_ordered():
    frame = _frame()
    split = split_rows(frame, np.zeros(200), SplitConfig(method="time", time_column="t"),
                       "regression", seed=0)
    t = frame["t"].to_numpy()
    assert t[split.train].max() < t[split.val].min() <= t[split.val].max() < t[split.test].min()


def test_a_time_split_on_dates_written_as_text_orders_them_as_dates():
    shuffled = np.random.default_rng(0).permutation(200) * 3
    days = pd.Timestamp("2012-01-01") + pd.to_timedelta(shuffled, unit="D")
    frame = pd.DataFrame({"t": days.strftime("%m/%d/%Y"), "x": np.arange(200)})  # "12/31/2012" > "01/02/2013"
    config = SplitConfig(method="time", time_column="t")
    split = split_rows(frame, np.zeros(200), config, "regression", seed=0)
    assert days[split.train].max() < days[split.val].min() <= days[split.val].max() < days[split.test].min()


def test_errors():
    with pytest.raises(ConfigError,
                       match=r"split\.group_column: column 'grp' is not in the data\. Columns: g, t, x"):
        split_rows(_frame(), np.zeros(200), SplitConfig(method="group", group_column="grp"),
                   "regression", 0)
    y = np.array([0] * 199 + [1])
    with pytest.raises(DataError, match=r"split failed: 1 of 2 classes have fewer than 3 rows: 1 \(1 rows\)"):
        split_rows(_frame(), y, SplitConfig(), "binary", 0)


def test_identical_rows_stay_in_one_part_and_are_kept_by_default():
    """Repeated rows are real observations more often than not: they are kept (drop_duplicates is
    off by default) and every copy lands in the same part, so none is in training and in test."""
    from fitwell.config import load_config
    from fitwell.data.prepare import prepare

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.integers(0, 3, 400), "b": rng.integers(0, 3, 400)})
    frame["y"] = (frame["a"] + rng.integers(0, 2, 400) > 1).astype(int)  # 9 feature combinations x 2
    config = load_config({"data": {"target": "y"}})
    prepared = prepare(config, frame)
    assert len(prepared.frame) == 400  # nothing dropped
    keys = prepared.frame.apply(tuple, axis=1)
    split = prepared.split
    parts = [set(keys.iloc[rows]) for rows in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[2]) and not (parts[0] & parts[1]) and not (parts[1] & parts[2])
    assert len(prepared.split.test) > 0


def test_keep_duplicates_together_moves_copies_to_the_first_part():
    from fitwell.data.split import Split, keep_duplicates_together

    groups = np.array([0, 1, 0, 2, 1, 3])
    split = keep_duplicates_together(Split(np.array([0, 3]), np.array([1]), np.array([2, 4, 5])), groups)
    assert split.train.tolist() == [0, 2, 3] and split.val.tolist() == [1, 4] and split.test.tolist() == [5]


def test_classes_too_rare_to_stratify_share_a_stratum_and_are_named_in_the_notes():
    """A class of one or two rows cannot be in train, validation and test; a stratified split of
    such a table used to fail. The rare classes now share one stratum (their rows placed at random),
    the others stay stratified, and the run's notes name them; an error that remains names the
    classes by their labels, not their codes."""
    from fitwell.config import load_config
    from fitwell.data.prepare import prepare

    rng = np.random.default_rng(0)
    years = np.array([1997, 2002, 2004, 2004] + [2010] * 100 + [2011] * 100 + [2012] * 96)
    frame = pd.DataFrame({"x": rng.normal(size=300), "year": years})
    prepared = prepare(load_config({"data": {"target": "year"}}), frame)
    assert prepared.task == "multiclass"
    note, = [n for n in prepared.notes if "fewer than 3 rows" in n]
    assert "3 classes" in note and "1997, 2002, 2004" in note
    for part in (prepared.split.train, prepared.split.val, prepared.split.test):
        share = (years[part] == 2010).mean()
        assert abs(share - 100 / 300) < 0.05  # the common classes stay stratified
    y = np.array(["yes"] * 199 + ["no"])
    codes = (y == "yes").astype(int)
    with pytest.raises(DataError, match=r"fewer than 3 rows: no \(1 rows\)"):
        split_rows(_frame(), codes, SplitConfig(), "binary", 0, names=np.array(["no", "yes"]))


def test_a_stratified_part_smaller_than_the_class_count_grows_to_one_row_per_class():
    """60 rows of 10 classes: 15% is 9 test rows, too few for one of each class, which failed the
    split. The test and validation parts now hold at least a row per class."""
    y = np.repeat(np.arange(10), 6)
    frame = pd.DataFrame({"x": np.arange(60.0)})
    split = split_rows(frame, y, SplitConfig(), "multiclass", seed=0)
    for part in (split.test, split.val):
        assert sorted(y[part]) == list(range(10))
    assert len(split.train) == 40
