"""The preprocessing of a private run: public values, or OpenDP releases charged to the budget."""

import numpy as np
import pandas as pd
import pytest

from fitwell.config import load_config
from fitwell.data.columns import ColumnPlan
from fitwell.data.preprocess import Preprocessor
from fitwell.errors import ConfigError
from fitwell.privacy.preprocess import (
    fit_private,
    planned_releases,
    release_bounds,
    release_categories,
    release_median,
    release_sum,
)


def table(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(50, 12, n).clip(18, 95), "income": rng.lognormal(10.5, 0.4, n),
                          "region": rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]),
                          "smoker": rng.choice(["yes", "no"], n)})
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    return frame, pd.Series(rng.integers(0, 2, n), name="y")


PLAN = ColumnPlan("y", {"age": "numeric", "income": "numeric", "region": "categorical", "smoker": "boolean"})


def config(**privacy):
    return load_config({"data": {"target": "y"}, "privacy": {"epsilon": 3.0, **privacy}})


def fitted(frame, y, cfg):
    pre = Preprocessor(PLAN, cfg.preprocess, "binary")
    return pre, fit_private(pre, frame, y, cfg, 1e-6)


def test_with_public_values_for_everything_no_row_changes_the_preprocessing():
    cfg = config(bounds={"age": [18, 100], "income": [0, 300_000]},
                 categories={"region": ["north", "south", "east", "west"]}, preprocessing_epsilon=0)
    cfg = cfg.model_copy(update={"preprocess": cfg.preprocess.model_copy(
        update={"scale": "minmax_symmetric", "impute_numeric": "constant"})})
    frame, y = table(2_000)
    changed = frame.copy()
    changed.loc[0, ["age", "income", "region", "smoker"]] = [95.0, 5e6, "west", "yes"]  # one row
    probe = frame.head(50)
    a, spent = fitted(frame, y, cfg)
    b, _ = fitted(changed, y, cfg)
    assert spent["epsilon"] == 0 and spent["releases"] == 0
    assert np.array_equal(a.transform(probe).numeric, b.transform(probe).numeric)
    normal = Preprocessor(PLAN, cfg.preprocess, "binary")
    other = Preprocessor(PLAN, cfg.preprocess, "binary")
    assert not np.array_equal(normal.fit(frame, y).transform(probe).numeric,
                              other.fit(changed, y).transform(probe).numeric)  # a plain fit does move


def test_released_statistics_are_close_to_the_truth_on_many_rows_and_enter_the_scaler():
    frame, y = table()
    cfg = config(bounds={"age": [0, 120]}, preprocessing_epsilon=2.0)
    pre, spent = fitted(frame, y, cfg)
    stats = spent["statistics"]
    assert spent["releases"] == len(planned_releases(cfg, PLAN, "binary", 1e-6).items) == 12
    assert abs(stats["age"]["mean"] - frame.age.mean()) < 1.0
    assert abs(stats["age"]["std"] - frame.age.std()) < 1.5
    assert abs(stats["income"]["median"] - frame.income.median()) < 0.1 * frame.income.median()
    low, high = stats["income"]["low"], stats["income"]["high"]  # released by the histogram
    assert low <= frame.income.quantile(0.01) and high >= frame.income.quantile(0.99) and high < 1e7
    scaler = pre.numeric_.named_transformers_["numeric"]["scale"]
    assert scaler.mean_[0] == pytest.approx(stats["age"]["mean"], abs=1e-5)
    encoder = pre.numeric_.named_transformers_["onehot"]["encode"]
    assert pre.codes_ is None and "north" in str(encoder.categories_)


def test_a_category_of_one_row_never_makes_the_list():
    values = ["common"] * 500 + ["rare"]
    kept = [tuple(release_categories(values, 1.0, 1e-6)) for _ in range(20)]
    assert all(k == ("common",) for k in kept)


def test_releases_are_random_but_bounded():
    values = np.random.default_rng(0).normal(10, 1, 5000)
    medians = {release_median(values, 0, 20, 0.01) for _ in range(8)}
    assert len(medians) > 1 and all(abs(m - 10) < 2.0 for m in medians)  # noise from a secure source
    assert release_bounds(values, 1.0) == (4.0, 16.0)  # powers of two around 99% of N(10, 1)


def test_a_sum_over_a_very_wide_released_range_still_releases():
    # the standard deviation sums squares over [0, reach]: bounds near 2^41 make reach near 2^82
    values = np.random.default_rng(0).random(500)
    for high in (1.0, 1e12, 2.0 ** 82, 1e200):
        noisy = release_sum(values, 0.0, high, 0.05)
        assert np.isfinite(noisy) and abs(noisy - values.sum()) < 1e4 * max(1.0, high)


def test_private_preprocessing_refuses_what_it_cannot_release():
    frame, y = table(500)
    cfg = config(preprocessing_epsilon=0)
    with pytest.raises(ConfigError, match=r"privacy.preprocessing_epsilon: 0.*age \(bounds/median"):
        fitted(frame, y, cfg)
    robust = cfg.model_copy(update={"preprocess": cfg.preprocess.model_copy(update={"scale": "robust"})})
    with pytest.raises(ConfigError, match="preprocess.scale: robust"):
        fitted(frame, y, robust)
    with pytest.raises(ConfigError, match="leaves nothing"):
        fitted(frame, y, config(preprocessing_epsilon=3.0))
