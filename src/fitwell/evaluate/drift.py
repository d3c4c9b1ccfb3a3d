"""Data and prediction drift: a reference profile of the training split, saved with the run, and
the comparison of new rows with it.

Each number keeps 1,001 quantiles of its training values (``inverted_cdf``: real values, so
integer columns stay integer), its decile edges and shares, mean, standard deviation and missing
share; each category column its category shares (every category up to 1,000). New rows are compared
with a two-sample Kolmogorov-Smirnov test against those quantiles (a stand-in for the training
sample of at most 1,001 rows: ties handled, and the reference's finite size is in the p-value), the
Wasserstein distance over the training standard deviation and the population stability index (PSI)
for numbers; a chi-square test of both samples' counts, the total variation distance and PSI for
categories; a two-proportion test for the missing share; the share of categories training never
saw. A column drifts only when a change is both significant and large (``monitor.*`` thresholds):
with 100,000 rows a test alone calls every harmless wobble significant, and with 50 rows an effect
size alone is noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

QUANTILES = 1001
MAX_CATEGORIES = 1000
EPS = 1e-4  # share floor in PSI and chi-square: an empty bin is rare, not impossible


def numbers_of(series: pd.Series, kind: str = "number") -> pd.Series:
    """A number column's values, a date column's as days since 1970 (as the model reads them), a
    free-text column's as words a value (its values are all different: their length can shift)."""
    from fitwell.data.columns import to_days, to_numbers

    if kind == "text":
        return series.map(lambda v: float(len(v.split())) if isinstance(v, str) else np.nan).astype(float)
    return to_days(series) if kind == "date" else to_numbers(series)


def categories_of(series: pd.Series) -> pd.Series:
    """Category values as trimmed text (the profile compares raw values, as the user sends them)."""
    return series.map(lambda v: str(v).strip() if not (v is None or (isinstance(v, float) and v != v))
                      else None)


def profile_column(series: pd.Series, kind: str) -> dict[str, Any]:
    """The reference profile of one training column (``kind``: number, date, text or category)."""
    rows = len(series)
    if kind in ("number", "date", "text"):
        values = numbers_of(series, kind).dropna().to_numpy(dtype=float)
        out: dict[str, Any] = {"kind": kind, "rows": rows, "missing": 1 - len(values) / max(rows, 1)}
        if len(values):
            edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
            out.update(quantiles=np.quantile(values, np.linspace(0, 1, QUANTILES),
                                             method="inverted_cdf").tolist(),
                       edges=edges.tolist(), shares=bin_shares(values, edges).tolist(),
                       mean=float(values.mean()), std=float(values.std()))
        return out
    values = categories_of(series).dropna()
    shares = values.value_counts(normalize=True)
    return {"kind": "category", "rows": rows, "missing": 1 - len(values) / max(rows, 1),
            "shares": {str(k): float(v) for k, v in shares.head(MAX_CATEGORIES).items()},
            "truncated": bool(len(shares) > MAX_CATEGORIES)}


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def reference_profile(frame: pd.DataFrame, kinds: dict[str, str], predictions: pd.DataFrame | None,
                      task: str, metrics: dict | None = None) -> dict[str, Any]:
    """The training split's profile (``kinds``: column -> number or category), plus the profile
    of the test split's predictions and its metrics when there is one."""
    profile = {"version": 1, "task": task, "rows": len(frame),
               "columns": {c: profile_column(frame[c], k) for c, k in kinds.items() if c in frame}}
    if predictions is not None and len(predictions):
        column, kind = prediction_column(predictions, task)
        profile["prediction"] = profile_column(column, kind)
    if metrics:
        profile["metrics"] = metrics
    return profile


def prediction_column(predictions: pd.DataFrame, task: str) -> tuple[pd.Series, str]:
    """What is compared of the predictions: the value (regression), the positive class's probability
    (binary), or the predicted label (multiclass)."""
    if task == "regression":
        return predictions["prediction"], "number"
    if task == "binary":
        probability = [c for c in predictions.columns if c.startswith("proba_")][-1]
        return predictions[probability], "number"
    return predictions["prediction"].astype(str), "category"


def compare_column(reference: dict, series: pd.Series, limits) -> dict[str, Any]:
    """The drift of one column against its reference profile; ``drift`` says if it crosses."""
    number = reference["kind"] in ("number", "date", "text")
    values = numbers_of(series, reference["kind"]) if number else categories_of(series)  # converted once
    missing = float(values.isna().mean()) if len(values) else 0.0
    out: dict[str, Any] = {"kind": reference["kind"], "rows": len(series), "missing": missing,
                           "missing_reference": reference["missing"], "reasons": []}
    p_missing = two_proportions(reference["missing"], reference["rows"], missing, len(series))
    if p_missing < limits.p_value and abs(missing - reference["missing"]) >= limits.missing:
        out["reasons"].append(f"missing values {reference['missing']:.1%} -> {missing:.1%}")
    if number:
        compare_numbers(reference, values.dropna().to_numpy(dtype=float), limits, out)
    else:
        compare_categories(reference, values.dropna(), limits, out)
    out["drift"] = bool(out["reasons"])
    return out


def compare_numbers(reference: dict, values: np.ndarray, limits, out: dict) -> None:
    if "quantiles" not in reference or len(values) == 0:
        return
    sample = np.asarray(reference["quantiles"])
    present = round(reference["rows"] * (1 - reference["missing"]))
    if present < len(sample):  # a stand-in no larger than the sample it stands for: honest p-values
        sample = np.quantile(sample, np.linspace(0, 1, max(present, 2)), method="inverted_cdf")
    scale = reference["std"] or 1.0
    out["ks_p_value"] = float(stats.ks_2samp(sample, values).pvalue)
    out["wasserstein"] = float(stats.wasserstein_distance(sample, values) / scale)
    edges = np.asarray(reference["edges"])
    out["psi"] = psi(np.asarray(reference["shares"]), bin_shares(values, edges))
    out["mean"], out["mean_reference"] = float(values.mean()), reference["mean"]
    if out["ks_p_value"] < limits.p_value and (out["wasserstein"] >= limits.wasserstein
                                               or out["psi"] >= limits.psi):
        out["reasons"].append(f"distribution moved: Wasserstein {out['wasserstein']:.3f} sd, PSI"
                              f" {out['psi']:.3f}, KS p {out['ks_p_value']:.2g}; mean"
                              f" {reference['mean']:.4g} -> {out['mean']:.4g}")


def compare_categories(reference: dict, values: pd.Series, limits, out: dict) -> None:
    if len(values) == 0:
        return
    known = reference["shares"]
    counts = values.value_counts()
    unseen = counts[[k not in known for k in counts.index]]
    out["new_categories"] = float(unseen.sum() / len(values))
    out["new_category_examples"] = [str(k) for k in unseen.index[:5]]
    labels = list(known)
    observed = np.array([counts.get(k, 0) for k in labels] + [unseen.sum()], dtype=float)
    expected_share = np.array([known[k] for k in labels] + [max(0.0, 1 - sum(known.values()))])
    new_share = observed / observed.sum()
    out["total_variation"] = float(0.5 * np.abs(new_share - expected_share).sum())
    out["psi"] = psi(expected_share, new_share)
    # two samples (training's counts too): a small training split's own noise is not drift
    present = reference["rows"] * (1 - reference["missing"])
    both = np.vstack([expected_share * present, observed])
    both = both[:, both.sum(axis=0) > 0]
    out["chi2_p_value"] = float(stats.chi2_contingency(both).pvalue) if both.shape[1] > 1 else 1.0
    if out["chi2_p_value"] < limits.p_value and out["total_variation"] >= limits.categories:
        moved = sorted(labels, key=lambda k: -abs(counts.get(k, 0) / len(values) - known[k]))[:3]
        out["reasons"].append("category shares moved (total variation {:.3f}): {}".format(
            out["total_variation"], ", ".join(f"{k} {known[k]:.1%} -> {counts.get(k, 0) / len(values):.1%}"
                                              for k in moved)))
    if out["new_categories"] >= limits.new_categories and not reference.get("truncated"):
        out["reasons"].append(f"{out['new_categories']:.1%} of rows have categories training never saw"
                              f" ({', '.join(out['new_category_examples'])})")


def psi(reference: np.ndarray, new: np.ndarray) -> float:
    """Population stability index: sum of (new - ref) * ln(new / ref) over bins."""
    a, b = np.maximum(reference, EPS), np.maximum(new, EPS)
    return float(np.sum((b - a) * np.log(b / a)))


def two_proportions(p1: float, n1: int, p2: float, n2: int) -> float:
    """Two-sided p-value that two shares are equal (pooled z-test); 1 when it cannot be told."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * stats.norm.sf(abs(p1 - p2) / spread))


def compared_columns(result: dict) -> dict[str, dict]:
    """Every compared column of a ``compare`` result, the predictions last as ``(predictions)``."""
    extra = {"(predictions)": result["prediction"]} if "prediction" in result else {}
    return {**result["columns"], **extra}


def compare(reference: dict, frame: pd.DataFrame, predictions: pd.DataFrame | None, limits) -> dict:
    """Every reference column (and the predictions) against the new rows."""
    columns = {}
    for name, profile in reference["columns"].items():
        if name not in frame:
            columns[name] = {"kind": profile["kind"], "drift": True, "reasons": ["column missing"]}
            continue
        columns[name] = compare_column(profile, frame[name], limits)
    result: dict[str, Any] = {"rows": len(frame), "columns": columns}
    if predictions is not None and "prediction" in reference:
        column, _ = prediction_column(predictions, reference["task"])
        result["prediction"] = compare_column(reference["prediction"], column, limits)
    drifted = [n for n, c in columns.items() if c["drift"]]
    result["drifted_columns"] = drifted
    result["share_drifted"] = len(drifted) / max(len(columns), 1)
    return result
