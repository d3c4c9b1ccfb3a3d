"""The preprocessing of a private run: public values from the config, or OpenDP estimates.

A normal run fits its imputation values, scalers and category lists on the training rows; in a
private run none of those may look at a row except through a differentially private mechanism.
The preprocessor is first fitted on a *public frame* built from the config alone (each number
column's ``privacy.bounds``, each category column's ``privacy.categories``, a missing row), which
gives every transformer its shape and the public statistics for free (min-max scaling, a
constant fill); then each statistic that must come from the data is released by OpenDP and
written over the public one:

=====================  ===============================================================  ==========
statistic              mechanism (OpenDP, add/remove-one-row neighbours)                releases
=====================  ===============================================================  ==========
range (no public one)  Laplace histogram over signed powers of two, 0.5-99.5% of it      1
mean (impute, scale)   clamp to the bounds, Laplace sum / Laplace count                  2
standard deviation     + Laplace sum of squared distances from the released mean         1
median (impute)        exponential-mechanism quantile over 1,001 points of the bounds    1
category list          Laplace counts kept above a threshold (unknown domain: epsilon,   1
                       delta) -- where ``privacy.categories`` does not name the list
yes/no share (fill)    Laplace sum / Laplace count (none with impute_numeric: constant)  2
regression target      mean and standard deviation as above, in ``privacy.bounds``       3
=====================  ===============================================================  ==========

Every release gets an equal share of ``privacy.preprocessing_epsilon`` (sequential
composition); the category lists share half of delta. The number of releases, and so the
split, follows from the config and the column plan alone, so a resumed run recomputes it.
OpenDP draws its noise from the operating system's secure generator: two private runs of the
same config differ in these statistics (a resumed run reuses the saved ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fitwell.errors import ConfigError

SUPPORTED_SCALES = ("standard", "minmax", "minmax_symmetric", "none")
SUPPORTED_IMPUTE = ("mean", "median", "constant")


@dataclass
class Releases:
    """The statistics a private run releases from the data, and its preprocessing budget."""

    items: list[tuple[str, str]] = field(default_factory=list)  # (column, statistic)
    epsilon: float = 0.0
    delta: float = 0.0

    @property
    def vocabularies(self) -> int:
        return sum(1 for _, stat in self.items if stat == "categories")

    def each(self) -> float:
        return self.epsilon / max(1, len(self.items))


def planned_releases(config: Any, plan: Any, task: str, delta: float) -> Releases:
    """What the preprocessing of ``config`` releases for ``plan``'s columns, with the budget
    (``privacy.preprocessing_epsilon``; auto: a tenth of epsilon when anything is released)."""
    privacy, pre = config.privacy, config.preprocess
    items: list[tuple[str, str]] = []
    needs = numeric_needs(pre)
    for column in plan.columns("numeric"):
        items += [(column, "bounds")] if column not in privacy.bounds else []
        items += [(column, "median")] if "median" in needs else []
        items += [(column, "sum"), (column, "count")] if needs & {"mean", "std"} else []
        items += [(column, "squares")] if "std" in needs else []
    if pre.impute_numeric != "constant":  # constant: a missing yes/no is no
        items += [(c, stat) for c in plan.columns("boolean") for stat in ("sum", "count")]
    items += [(c, "categories") for c in plan.columns("categorical") if c not in privacy.categories]
    if task == "regression" and pre.scale_target:
        items += [(plan.target, "bounds")] if plan.target not in privacy.bounds else []
        items += [(plan.target, "sum"), (plan.target, "count"), (plan.target, "squares")]
    setting = privacy.preprocessing_epsilon
    epsilon = (0.1 * privacy.epsilon if items else 0.0) if setting == "auto" else float(setting)
    if items and epsilon <= 0:
        raise ConfigError("privacy.preprocessing_epsilon: 0, but the preprocessing needs these statistics"
                          f" of the private rows: {describe(items)}; give it a share of privacy.epsilon,"
                          " or make them public (privacy.bounds, privacy.categories, preprocess.scale:"
                          " minmax, preprocess.impute_numeric: constant, preprocess.scale_target: false)")
    if epsilon >= privacy.epsilon:
        raise ConfigError(f"privacy.preprocessing_epsilon: {epsilon:g} leaves nothing of privacy.epsilon"
                          f" {privacy.epsilon:g} for training; give it a smaller share")
    vocab = any(stat == "categories" for _, stat in items)
    return Releases(items, epsilon if items else 0.0, delta / 2 if vocab else 0.0)


def describe(items: list[tuple[str, str]]) -> str:
    names: dict[str, list[str]] = {}
    for column, stat in items:
        names.setdefault(column, []).append(stat)
    return ", ".join(f"{c} ({'/'.join(s)})" for c, s in names.items())


def check_private_settings(config: Any) -> None:
    """Only the scalings and fills this module can release privately are allowed."""
    pre = config.preprocess
    if pre.scale not in SUPPORTED_SCALES:
        raise ConfigError(f"preprocess.scale: {pre.scale} is fitted on the private rows; a private run takes"
                          f" {', '.join(SUPPORTED_SCALES)}")
    if pre.impute_numeric not in SUPPORTED_IMPUTE:
        raise ConfigError(f"preprocess.impute_numeric: {pre.impute_numeric} has no private release here;"
                          f" use {', '.join(SUPPORTED_IMPUTE)}")
    if pre.outliers != "none" or pre.missing_indicator or pre.impute_categorical != "constant":
        raise ConfigError("preprocess.outliers / missing_indicator / impute_categorical: fitted on the"
                          " private rows; a private run clips to privacy.bounds, fills categories with a"
                          " constant and takes no missing indicators")


def public_frame(plan: Any, task: str, bounds: dict[str, tuple[float, float]],
                 categories: dict[str, list]) -> tuple[pd.DataFrame, pd.Series]:
    """Rows built from public or released values alone: each number at its bounds, each
    category listed once, yes and no, and a row of missing values."""
    size = max([2] + [len(v) for v in categories.values()]) + 1
    columns: dict[str, list] = {}
    for column, kind in plan.kinds.items():
        if kind == "numeric":
            low, high = bounds[column]
            values: list = [low if i % 2 == 0 else high for i in range(size - 1)]
        elif kind == "boolean":
            values = [i % 2 == 0 for i in range(size - 1)]
        else:
            listed = categories[column]
            values = [listed[i % len(listed)] if listed else None for i in range(size - 1)]
        columns[column] = [*values, None]
    frame = pd.DataFrame(columns)
    if task == "regression":
        low, high = bounds.get(plan.target, (0.0, 1.0))
        target = pd.Series([low if i % 2 == 0 else high for i in range(size)], name=plan.target)
    else:
        target = pd.Series([0] * size, name=plan.target)
    return frame, target


def private_fit(config: Any):
    """The ``fit_preprocessor`` of ``fitwell.data.prepare`` for a private run: it fits with
    ``fit_private`` and keeps what was released on the preprocessor (``privacy_``, saved)."""
    from fitwell.config.privacy import resolve_delta

    def fit(pre: Any, frame: pd.DataFrame, y: pd.Series) -> None:
        pre.privacy_ = fit_private(pre, frame, y, config, resolve_delta(config.privacy.delta, len(frame)))

    return fit


def fit_private(pre: Any, frame: pd.DataFrame, y: pd.Series, config: Any, delta: float) -> dict:
    """Fit ``pre`` (a Preprocessor) for a private run: structure and public statistics from the
    public frame, the rest released by OpenDP from ``frame``/``y`` (the training rows).

    Returns:
        What metrics.json records: the preprocessing epsilon and delta, and each statistic.
    """
    from fitwell.data.clean import type_columns

    plan, task, privacy = pre.plan, pre.task, config.privacy
    if pre.inputs:
        raise ConfigError("privacy: image, text and sequence inputs fit vocabularies and statistics on the"
                          " private rows; a private run takes table columns only")
    check_private_settings(config)
    if plan.columns("text"):
        names = ", ".join(map(repr, plan.columns("text")))
        raise ConfigError(f"column(s) {names}: free text, whose vocabulary and components are fitted on the"
                          " rows; a private run cannot release them. Drop it (data.drop) or declare it"
                          " categorical with privacy.categories listing its public values")
    releases = planned_releases(config, plan, task, delta)
    eps, vocab_delta = releases.each(), releases.delta / max(1, releases.vocabularies)
    typed = type_columns(frame, plan, pre.normalize_strings, lambda _: None)
    categories = {c: [str(v) for v in privacy.categories[c]] if c in privacy.categories
                  else release_categories(typed[c].dropna().astype(str).tolist(), eps, vocab_delta)
                  for c in plan.columns("categorical")}
    numbers = {c: typed[c].to_numpy(dtype=float) for c in plan.columns("numeric")}
    if task == "regression" and config.preprocess.scale_target:
        numbers[plan.target] = y.to_numpy(dtype=float)
    bounds = {c: tuple(privacy.bounds[c]) if c in privacy.bounds
              else release_bounds(values[~np.isnan(values)], eps) for c, values in numbers.items()}
    public, public_y = public_frame(plan, task, bounds, categories)
    pre.fit(public, public_y)
    released: dict[str, dict] = {}
    for column, values in numbers.items():
        needs = {"mean", "std"} if column == plan.target else numeric_needs(config.preprocess)
        released[column] = column_statistics(values, bounds[column], needs, eps)
        released[column].update(zip(("low", "high"), bounds[column], strict=True))
    write_numeric(pre, released)
    write_booleans(pre, typed, eps if config.preprocess.impute_numeric != "constant" else None)
    if plan.target in released:
        pre.target_mean_, pre.target_std_ = released[plan.target]["mean"], released[plan.target]["std"]
    return {"epsilon": releases.epsilon, "delta": releases.delta, "releases": len(releases.items),
            "epsilon_each": eps, "mechanism": "OpenDP: Laplace sums and counts, exponential-mechanism"
                                               " median, Laplace-threshold category lists",
            "statistics": {c: {k: round(v, 6) for k, v in stats.items()} for c, stats in released.items()},
            "category_lists": {c: ("public" if c in privacy.categories else f"{len(v)} kept (DP)")
                               for c, v in categories.items()},
            "public_bounds": sorted(privacy.bounds), "public_categories": sorted(privacy.categories)}


def numeric_needs(pre: Any) -> set[str]:
    """The statistics ``preprocess`` needs of a number column."""
    needs = {pre.impute_numeric} & {"mean", "median"}
    return needs | ({"mean", "std"} if pre.scale == "standard" else set())


def column_statistics(values: np.ndarray, bounds, needs: set[str], epsilon: float) -> dict[str, float]:
    """A number column's released statistics (NaN rows left out: a row-wise step before the
    mechanism), each release at ``epsilon``."""
    low, high = float(bounds[0]), float(bounds[1])
    present = values[~np.isnan(values)]
    out: dict[str, float] = {}
    if "median" in needs:
        out["median"] = release_median(present, low, high, epsilon)
    if needs & {"mean", "std"}:
        count = max(1.0, release_count(present, epsilon))
        out["mean"] = min(high, max(low, release_sum(present, low, high, epsilon) / count))
        if "std" in needs:  # squared distances from the released mean (post-processing of it)
            centre = out["mean"]
            reach = max(high - centre, centre - low) ** 2
            squares = (np.clip(present, low, high) - centre) ** 2
            spread = release_sum(squares, 0.0, reach, epsilon) / count
            out["std"] = float(np.sqrt(max(spread, ((high - low) / 200) ** 2)))
    return out


def write_numeric(pre: Any, released: dict[str, dict]) -> None:
    """The released values over the public fit: clip bounds, fill values, standard scaling."""
    columns = pre.plan.columns("numeric")
    if not columns:
        return
    pipe = pre.numeric_.named_transformers_["numeric"]
    pipe["clip"].lower_ = np.array([released[c]["low"] for c in columns], dtype=float)
    pipe["clip"].upper_ = np.array([released[c]["high"] for c in columns], dtype=float)
    fill = pre.config.impute_numeric
    if fill != "constant":
        pipe["impute"].statistics_ = np.array([released[c][fill] for c in columns], dtype=float)
    if pre.config.scale == "standard":
        scaler = pipe["scale"]
        scaler.mean_ = np.array([released[c]["mean"] for c in columns], dtype=float)
        scaler.scale_ = np.array([released[c]["std"] for c in columns], dtype=float)
        scaler.var_ = scaler.scale_ ** 2


def write_booleans(pre: Any, typed: pd.DataFrame, epsilon: float | None) -> None:
    """A missing yes/no is filled with the released majority, or with no (``epsilon`` None)."""
    columns = pre.plan.columns("boolean")
    if not columns:
        return
    imputer = pre.numeric_.named_transformers_["boolean"]
    fills = []
    for column in columns:
        if epsilon is None:
            fills.append(False)
            continue
        present = typed[column].dropna().to_numpy(dtype=float)
        share = release_sum(present, 0.0, 1.0, epsilon) / max(1.0, release_count(present, epsilon))
        fills.append(share >= 0.5)
    imputer.statistics_ = np.array(fills, dtype=imputer.statistics_.dtype)


# --- OpenDP measurements (add/remove one row: symmetric distance 1) ---------------------------
def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _numbers(dp):
    return dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()


def release_sum(values: np.ndarray, low: float, high: float, epsilon: float) -> float:
    dp = _opendp()
    space = _numbers(dp)
    # explicit search bounds: OpenDP's own search for the scale overflows on wide ranges (a sum of
    # squares over released bounds near 2^41 reaches 2^82) and walks into negative scales
    upper = min(1e300, 1e3 * max(1.0, abs(low), abs(high)) / epsilon)
    measure = dp.binary_search_chain(
        lambda s: space >> dp.t.then_clamp((low, high)) >> dp.t.then_sum() >> dp.m.then_laplace(s),
        d_in=1, d_out=epsilon, bounds=(0.0, upper))
    return float(measure([float(v) for v in values]))


def release_count(values: np.ndarray, epsilon: float) -> float:
    dp = _opendp()
    space = _numbers(dp)
    measure = dp.binary_search_chain(lambda s: space >> dp.t.then_count() >> dp.m.then_laplace(s),
                                     d_in=1, d_out=epsilon)
    return float(measure([float(v) for v in values]))


def release_median(values: np.ndarray, low: float, high: float, epsilon: float) -> float:
    dp = _opendp()
    space = _numbers(dp)
    candidates = [float(c) for c in np.linspace(low, high, 1001)]
    measure = dp.binary_search_chain(
        lambda s: space >> dp.t.then_clamp((low, high))
        >> dp.m.then_private_quantile(dp.max_divergence(), candidates, 0.5, s), d_in=1, d_out=epsilon)
    return float(measure([float(v) for v in values]))


def release_categories(values: list[str], epsilon: float, delta: float) -> list[str]:
    """The categories whose Laplace count clears the threshold that makes an unknown domain
    (epsilon, delta)-DP; sorted, so the list's order tells nothing."""
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    scale = (1.0 + 1e-9) / epsilon  # a hair more noise: the map rounds to at most epsilon

    def chain(threshold):
        counts = space >> dp.t.then_count_by(TV="u32")
        return counts >> dp.m.then_laplace_threshold(scale, threshold=threshold)

    # the smallest threshold whose delta fits (epsilon is the scale's alone)
    threshold = dp.binary_search(lambda t: chain(t).map(1)[1] <= delta, bounds=(1, 2**31 - 1))
    return sorted(chain(threshold)(values))


def _magnitude_bin(value: float) -> int:
    """0 for |v| < 2^-20; else +-(e + 21) for 2^e <= |v| < 2^(e+1), e clipped to [-20, 40]."""
    size = abs(value)
    if size < 2.0 ** -20:
        return 0
    exponent = min(40, max(-20, int(np.floor(np.log2(size)))))
    return int(np.sign(value)) * (exponent + 21)


def _bin_edges(index: int) -> tuple[float, float]:
    if index == 0:
        return -(2.0 ** -20), 2.0 ** -20
    low, high = 2.0 ** (abs(index) - 21), 2.0 ** (abs(index) - 20)
    return (low, high) if index > 0 else (-high, -low)


def release_bounds(values: np.ndarray, epsilon: float) -> tuple[float, float]:
    """A range for a number column without public bounds: a Laplace histogram over signed powers
    of two (Google's DP library's ApproxBounds idea), bins under a threshold dropped (5% chance
    that any empty bin clears it), the range from the 0.5% to the 99.5% of the rest."""
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance()
    bins = list(range(-61, 62))

    def chain(scale):
        counts = space >> dp.t.then_count_by_categories(categories=bins, null_category=False)
        return counts >> dp.m.then_laplace(scale)

    scale = dp.binary_search_param(chain, d_in=1, d_out=epsilon)
    noisy = np.asarray(chain(scale)([_magnitude_bin(float(v)) for v in values]), dtype=float)
    noisy[noisy < scale * np.log(len(bins) / 0.05)] = 0.0
    if noisy.sum() <= 0:
        return -1.0, 1.0  # nothing clears the noise: too few rows for this share of epsilon
    share = np.cumsum(noisy) / noisy.sum()
    low = bins[int(np.searchsorted(share, 0.005))]
    high = bins[int(np.searchsorted(share, 0.995))]
    return _bin_edges(low)[0], _bin_edges(high)[1]
