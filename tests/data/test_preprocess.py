import numpy as np
import pandas as pd
import pytest

from fitwell.config import PreprocessConfig, load_config
from fitwell.data.columns import ColumnPlan
from fitwell.data.prepare import prepare
from fitwell.data.preprocess import Preprocessor


def test_preprocessing_never_sees_validation_or_test_rows(mixed_frame):
    config = load_config({"data": {"target": "label"}, "preprocess": {"impute_numeric": "mean"}})
    data = prepare(config, mixed_frame)
    train_rows = data.frame.iloc[data.split.train]
    pipe = data.preprocessor.numeric_.named_transformers_["numeric"]
    expected_fill = train_rows[["x1", "x2"]].mean().to_numpy()
    assert np.allclose(pipe["impute"].statistics_, expected_fill)
    imputed = train_rows[["x1", "x2"]].fillna(train_rows[["x1", "x2"]].mean())
    assert np.allclose(pipe["scale"].mean_, imputed.mean().to_numpy())
    everything = data.frame[["x1", "x2"]].mean().to_numpy()
    assert not np.allclose(pipe["impute"].statistics_, everything)  # would be equal if leaking


def test_unseen_and_missing_categories_go_to_the_unknown_bucket(mixed_frame):
    config = load_config({"data": {"target": "label"}})
    pre = prepare(config, mixed_frame).preprocessor
    assert pre.code_columns_ == ["city"] and pre.onehot_columns_ == ["color"]
    new = mixed_frame.head(3).copy()
    new["city"] = ["city1", "atlantis", None]
    new["color"] = ["purple", "red", "red"]
    features = pre.transform(new)
    assert features.codes[:, 0].tolist()[1:] == [0, 0] and features.codes[0, 0] > 0
    onehot = [i for i, n in enumerate(pre.feature_names()) if n.startswith("onehot__color")]
    assert features.numeric[0, onehot].sum() == 0 and features.numeric[1, onehot].sum() == 1


@pytest.mark.parametrize("scale, low, high", [("minmax", 0.0, 1.0), ("minmax_symmetric", -1.0, 1.0)])
def test_minmax_ranges(scale, low, high):
    frame = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0) ** 2})
    pre = Preprocessor(ColumnPlan("y", {"a": "numeric", "b": "numeric"}),
                       PreprocessConfig(scale=scale), "regression").fit(frame, pd.Series(np.ones(50)))
    out = pre.transform(frame).numeric
    assert out.min() == pytest.approx(low) and out.max() == pytest.approx(high)


@pytest.mark.parametrize("method, clipped", [("quantile", 2), ("iqr", 1), ("none", 0)])
def test_outlier_clipping_is_counted(method, clipped):
    values = np.concatenate([np.linspace(0, 1, 98), [50.0, -0.5]])
    frame = pd.DataFrame({"a": values})
    config = PreprocessConfig(outliers=method, outlier_quantiles=(0.005, 0.995), scale="none")
    pre = Preprocessor(ColumnPlan("y", {"a": "numeric"}), config, "regression").fit(
        frame, pd.Series(values))
    assert sum(pre.statistics()["clipped"].values()) == clipped
    if method != "none":
        assert pre.transform(pd.DataFrame({"a": [1e6]})).numeric[0, 0] < 51


def test_missing_indicator_and_persistence(tmp_path, mixed_frame):
    config = load_config({"data": {"target": "label"}, "preprocess": {"missing_indicator": True,
                                                                        "scale": "robust"}})
    pre = prepare(config, mixed_frame).preprocessor
    assert "numeric__missingindicator_x1" in pre.feature_names()
    pre.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    back = Preprocessor.load(tmp_path)
    a, b = pre.transform(mixed_frame), back.transform(mixed_frame)
    assert np.array_equal(a.numeric, b.numeric) and np.array_equal(a.codes, b.codes)
    assert back.classes_ == [0, 1]


def test_smooth_clip_keeps_order_and_bounds_extreme_rows():
    """robust_smooth_clip (RealMLP): the median maps to 0, the bulk stays near its robust z-score,
    one extreme row is bounded by 3 instead of dominating, order kept; a column with IQR 0 uses
    half its range."""
    rng = np.random.default_rng(0)
    a = np.append(rng.normal(10, 2, 999), 1e6)  # one absurd row
    b = np.append(np.zeros(990), np.arange(1.0, 11.0))  # IQR 0, range 10
    frame = pd.DataFrame({"a": a, "b": b})
    pre = Preprocessor(ColumnPlan("y", {"a": "numeric", "b": "numeric"}),
                       PreprocessConfig(scale="robust_smooth_clip"), "regression").fit(frame, pd.Series(a))
    out = pre.transform(frame).numeric.astype(float)
    assert abs(out[:, 0]).max() <= 3 and out[-1, 0] > 2.99  # bounded, extreme row near the bound
    assert (np.diff(out[np.argsort(a), 0]) >= 0).all()  # order kept
    iqr = np.subtract(*np.percentile(a, [75, 25]))
    bulk = (a[:999] - np.median(a)) / iqr
    near = abs(bulk) < 0.5
    assert np.allclose(out[:999][near, 0], bulk[near], atol=0.01)  # ~identity near the centre
    assert out[-1, 1] == pytest.approx(2.0 / np.sqrt(1 + (2.0 / 3) ** 2), rel=1e-5)  # 10 / (10 / 2)
    standard = Preprocessor(ColumnPlan("y", {"a": "numeric", "b": "numeric"}), PreprocessConfig(),
                            "regression").fit(frame, pd.Series(a)).transform(frame).numeric
    assert np.std(standard[:999, 0]) < 0.01  # what the outlier does to standard scaling: the bulk squashed


def test_smooth_clip_does_not_scale_rounding_noise_into_values():
    """A free-text column's later SVD components are 0 on most rows up to rounding (duke_forest's
    addresses: an IQR of 5e-17 beside a range of 0.3); that IQR divided rounding noise into values
    of +-3, so the network read noise and its ONNX graph (other rounding) disagreed by 0.05."""
    from fitwell.data.preprocess import SmoothClipScaler

    rng = np.random.default_rng(0)
    x = np.append(rng.normal(0, 1e-16, 90), rng.uniform(0.1, 0.3, 10)).reshape(-1, 1)
    scaler = SmoothClipScaler().fit(x)
    out = scaler.transform(x).ravel()
    assert np.abs(out[:90]).max() < 1e-9  # the zeros stay zeros
    assert scaler.scale_[0] == pytest.approx((x.max() - x.min()) / 2)


def test_scale_target_false_leaves_the_target_alone():
    frame = pd.DataFrame({"a": np.arange(20.0)})
    y = pd.Series(np.linspace(100, 300, 20))
    plan = ColumnPlan("y", {"a": "numeric"})
    pre = Preprocessor(plan, PreprocessConfig(scale_target=False), "regression").fit(frame, y)
    assert (pre.target_mean_, pre.target_std_) == (0.0, 1.0)
    assert np.allclose(pre.encode_target(y), y)
    scaled = Preprocessor(plan, PreprocessConfig(), "regression").fit(frame, y)
    assert scaled.target_std_ == pytest.approx(y.std(ddof=0))


def test_a_missing_category_is_its_own_category():
    """With 60% of a categorical column missing, the gap itself predicts the target: it must reach
    the model as a category, not be filled with the commonest value."""
    from fitwell.config import load_config
    from fitwell.data.prepare import prepare

    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "blue"], size=n).astype(object)
    missing = rng.random(n) < 0.6
    colour[missing] = None
    frame = pd.DataFrame({"colour": colour, "x": rng.normal(size=n), "y": missing.astype(int)})
    prepared = prepare(load_config({"data": {"target": "y"}}), frame)
    numeric = prepared.train.numeric.numpy()
    target = prepared.train.target.numpy()
    # some one-hot column is exactly the missing indicator, which equals the target here
    assert any(np.array_equal(numeric[:, j] > 0.5, target == 1) for j in range(numeric.shape[1]))
