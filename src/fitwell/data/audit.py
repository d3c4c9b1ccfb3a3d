"""The data audit: what is wrong with a table before a model is trained on it.

Per column: type, missing share, distinct values, outliers (IQR and z-score). Over the table:
constant, near-constant and ID-like columns, exact duplicates, rows shared between the training
and the held-out splits, single columns that predict the target almost perfectly (target
leakage), class imbalance, and distribution shift between splits (Kolmogorov-Smirnov and the
population stability index). Every finding has a severity, the evidence and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fitwell.findings import Finding, count, sort_findings

if TYPE_CHECKING:
    from fitwell.config.schema import RunConfig
    from fitwell.data.prepare import PreparedData

NEAR_CONSTANT_SHARE = 0.99
Z_LIMIT = 3.0
IQR_FACTOR = 1.5
FAR_OUT_FACTOR = 3.0
FAR_OUT_SHARE = 0.02


@dataclass
class AuditReport:
    """The audit of one table: column profiles and findings, most severe first."""

    rows: int
    target: str
    task: str
    split: dict[str, int]
    columns: list[dict[str, Any]]
    findings: list[Finding]
    class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return count(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "target": self.target, "task": self.task, "split": self.split,
                "class_counts": self.class_counts, "counts": self.counts, "columns": self.columns,
                "findings": [f.to_dict() for f in self.findings]}


# ---- pure measurements ------------------------------------------------------------------------

def outlier_counts(values: np.ndarray, factor: float = IQR_FACTOR) -> tuple[int, int]:
    """(values beyond ``factor`` IQR of the quartiles, values with |z| > 3) among the finite ones.

    Example:
        >>> outlier_counts(np.r_[np.zeros(50), np.ones(50), 100.0])
        (1, 1)
    """
    finite = values[np.isfinite(values)]
    if len(finite) < 4:
        return 0, 0
    q1, q3 = np.percentile(finite, [25, 75])
    spread = q3 - q1
    iqr = int(((finite < q1 - factor * spread) | (finite > q3 + factor * spread)).sum()) if spread else 0
    std = finite.std()
    z = int((np.abs(finite - finite.mean()) > Z_LIMIT * std).sum()) if std > 0 else 0
    return iqr, z


def psi_bins(n_expected: int, n_actual: int) -> int:
    """Few bins for small samples: ten bins on 80 rows measure noise, not shift."""
    return int(np.clip(min(n_expected, n_actual) // 25, 2, 10))


def population_stability(expected: np.ndarray, actual: np.ndarray, bins: int = 10,
                         categorical: bool = False) -> float:
    """Population stability index of ``actual`` against ``expected`` (quantile bins of expected,
    or the categories). 0.1 is a moderate shift, 0.25 a major one (the industry's rule of thumb).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> population_stability(rng.normal(size=2000), rng.normal(size=2000)) < 0.05
        True
    """
    if categorical:
        labels = pd.Index(pd.unique(np.concatenate([expected, actual]).astype(object)))
        e = pd.Series(expected).value_counts().reindex(labels, fill_value=0).to_numpy(float)
        a = pd.Series(actual).value_counts().reindex(labels, fill_value=0).to_numpy(float)
    else:
        expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
        if len(expected) == 0 or len(actual) == 0:
            return 0.0
        edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = np.r_[-np.inf, edges, np.inf]
        e = np.histogram(expected, edges)[0].astype(float)
        a = np.histogram(actual, edges)[0].astype(float)
    e = np.maximum(e / max(e.sum(), 1), 1e-4)
    a = np.maximum(a / max(a.sum(), 1), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def single_column_score(x: pd.Series, y: np.ndarray, task: str, numeric: bool, train: np.ndarray,
                        held: np.ndarray, seed: int = 0) -> float:
    """How well ``x`` alone predicts ``y`` on held-out rows after learning on training rows:
    balanced accuracy for classes, R2 for values. A shallow tree for numbers, the per-category
    majority (or mean) for categories."""
    from sklearn.metrics import balanced_accuracy_score, r2_score

    y_train, y_held = y[train], y[held]
    if numeric:
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        values = pd.to_numeric(x, errors="coerce").to_numpy(dtype=float).reshape(-1, 1)
        tree = (DecisionTreeRegressor if task == "regression" else DecisionTreeClassifier)(
            max_depth=3, random_state=seed)
        predicted = tree.fit(values[train], y_train).predict(values[held])
    else:
        keys = category_keys(x)
        table = pd.DataFrame({"key": keys[train], "y": y_train})
        if task == "regression":
            by_key, default = table.groupby("key")["y"].mean(), float(np.mean(y_train))
        else:
            by_key = table.groupby("key")["y"].agg(lambda s: s.value_counts().index[0])
            default = pd.Series(y_train).value_counts().index[0]
        predicted = pd.Series(keys[held]).map(by_key).fillna(default).to_numpy()
    if task == "regression":
        return float(r2_score(y_held, predicted)) if np.var(y_held) > 0 else 0.0
    return float(balanced_accuracy_score(y_held, predicted.astype(y_held.dtype)))


def category_keys(values: pd.Series) -> np.ndarray:
    """Values as objects with missing ones as their own category."""
    return values.astype(object).where(values.notna(), "<missing>").to_numpy()


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


# ---- the audit --------------------------------------------------------------------------------

def _leakage(prepared: PreparedData, config: RunConfig, y: np.ndarray, columns: list[dict],
             findings: list[Finding]) -> None:
    """Each input column alone, fitted on (a sample of) the training rows and scored on the held-out
    rows: a score above ``audit.leakage_score`` means it probably encodes the target."""
    settings, split, plan = config.audit, prepared.split, prepared.plan
    frame, task = prepared.frame, prepared.task
    target = plan.target
    rng = np.random.default_rng(config.seed)
    held = np.concatenate([split.val, split.test])
    train_rows = split.train if len(split.train) <= settings.max_rows else \
        np.sort(rng.choice(split.train, settings.max_rows, replace=False))
    if len(held) and len(train_rows):
        for name, kind in (item for item in plan.kinds.items() if item[1] != "text"):  # all values distinct
            score = single_column_score(frame[name], y, task, kind == "numeric", train_rows, held,
                                        config.seed)
            metric = "R2" if task == "regression" else "balanced accuracy"
            _column(columns, name)["alone_score"] = round(score, 4)
            if score >= settings.leakage_score:
                findings.append(Finding(
                    "target_leakage", "error",
                    f"column {name!r} alone predicts {target!r} with held-out {metric} {score:.3f}:"
                    " it probably encodes the target (recorded after the outcome, or derived from it)",
                    column=name,
                    evidence={"score": score, "metric": metric, "threshold": settings.leakage_score},
                    fix=f"drop it: data.drop=[{name}] (if it is truly known at prediction time, raise"
                        " audit.leakage_score)"))


def audit(prepared: PreparedData, config: RunConfig) -> AuditReport:
    """Audit the prepared run's table: the raw columns, the cleaned rows and the split.

    Example:
        >>> from fitwell.config import load_config
        >>> from fitwell.data.prepare import prepare
        >>> config = load_config({"data": {"source": "sklearn:iris"}})
        >>> audit(prepare(config), config).counts["error"]
        0
    """
    plan, frame, split, task = prepared.plan, prepared.frame, prepared.split, prepared.task
    raw = prepared.raw if prepared.raw is not None else frame
    target = plan.target
    findings: list[Finding] = []
    columns = []

    y_raw = frame[target]
    if task == "regression":
        y = pd.to_numeric(y_raw, errors="coerce").to_numpy(dtype=float)
    else:
        classes = prepared.preprocessor.classes_
        y = y_raw.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)

    for name in raw.columns:
        columns.append(_profile(name, raw[name], frame, plan, findings))

    _duplicates(prepared, raw, findings)
    _leakage(prepared, config, y, columns, findings)
    class_counts = {}
    if task != "regression":
        class_counts = _imbalance(prepared, config, findings)
    _shift(prepared, config, findings)
    if prepared.clean.missing_target_rows:
        rows = prepared.clean.missing_target_rows
        findings.append(Finding(
            "missing_target", "warning",
            f"{len(rows)} rows have no {target!r} value and were left out (first: row {rows[0]})",
            column=target, evidence={"rows": rows[:20], "count": len(rows)},
            fix="fill in the target for those rows, or leave them out knowingly"))
    return AuditReport(rows=len(raw), target=target, task=task, split=split.sizes(), columns=columns,
                       findings=sort_findings(findings), class_counts=class_counts)


def _column(columns: list[dict], name: str) -> dict:
    return next(c for c in columns if c["name"] == name)


def _profile_numbers(name: str, series: pd.Series, frame: pd.DataFrame, role: str, kind: str, profile: dict,
                     findings: list[Finding]) -> None:
    """Range, spread and outlier counts of a numeric column; a finding when outliers are many."""
    numbers = None
    if kind == "numeric" and name in frame.columns:
        numbers = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    elif role != "input" and pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = series.to_numpy(dtype=float, na_value=np.nan)
    if numbers is not None and np.isfinite(numbers).any():
        finite = numbers[np.isfinite(numbers)]
        iqr, z = outlier_counts(numbers)
        far = outlier_counts(numbers, FAR_OUT_FACTOR)[0]
        profile.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                       std=float(finite.std()), outliers_iqr=iqr, outliers_z=z)
        # Tukey's far-out fence (3 IQR) separates planted or broken values from a long natural tail.
        severity = "warning" if far >= FAR_OUT_SHARE * len(finite) and z else \
            "info" if z >= 0.01 * len(finite) else None
        if role == "input" and severity:
            findings.append(Finding(
                "outliers", severity,
                f"column {name!r}: {z} values ({z / len(finite):.1%}) lie beyond 3 standard deviations,"
                f" {far} beyond 3 IQR of the quartiles (range {finite.min():.4g} to {finite.max():.4g})",
                column=str(name), evidence={"z_count": z, "iqr_count": iqr, "far_out_count": far,
                                            "rows": len(finite)},
                fix="clip them with preprocess.outliers=iqr (or quantile), or scale with"
                    " preprocess.scale=robust; check whether they are data-entry errors"))


def _profile(name: str, series: pd.Series, frame: pd.DataFrame, plan, findings: list[Finding]) -> dict:
    missing = float(series.isna().mean()) if len(series) else 0.0
    distinct = int(series.nunique(dropna=True))
    if name == plan.target:
        role, kind = "target", "target"
    elif name in plan.kinds:
        role, kind = "input", plan.kinds[name]
    else:
        role, kind = "dropped", plan.dropped.get(name, "not used")
    profile: dict[str, Any] = {"name": str(name), "role": role, "kind": kind, "dtype": str(series.dtype),
                               "missing": round(missing, 4), "distinct": distinct}
    _profile_numbers(name, series, frame, role, kind, profile, findings)
    if role == "target":
        return profile
    categorical = kind == "categorical"
    if categorical:  # the gap is a category of its own unless impute_categorical says otherwise
        keep = "missing values are their own category (preprocess.impute_categorical=constant)"
    else:
        keep = "keep the gap as a signal: preprocess.missing_indicator=true"
    if missing >= 0.5:
        findings.append(Finding(
            "missing_values", "warning", f"column {name!r} is {missing:.0%} missing", column=str(name),
            evidence={"share": missing}, fix=f"drop it (data.drop=[{name}]) or {keep}"))
    elif missing > 0:
        what = "a category of its own" if categorical else "imputed on the training split"
        findings.append(Finding(
            "missing_values", "info", f"column {name!r} is {missing:.1%} missing; {what}",
            column=str(name), evidence={"share": missing},
            fix=None if categorical else "preprocess.missing_indicator=true if missingness itself may carry"
                                         " signal"))
    reason = str(kind) if role == "dropped" else ""
    if reason.startswith("constant"):
        findings.append(Finding(
            "constant_column", "warning", f"column {name!r} holds a single value ({distinct} distinct);"
            " it carries no information and fitwell leaves it out", column=str(name),
            evidence={"distinct": distinct}, fix=f"remove it from the data or data.drop=[{name}]"))
    elif reason.startswith("ID-like"):
        findings.append(Finding(
            "id_column", "warning", f"column {name!r} looks like an identifier ({distinct} distinct values"
            f" in {series.notna().sum()} rows); fitwell leaves it out", column=str(name),
            evidence={"distinct": distinct},
            fix=f"declare it: data.columns.{name}=id (or =categorical/numeric if it is a real feature)"))
    elif role == "input" and distinct > 1:
        top = float(series.value_counts(normalize=True, dropna=False).iloc[0])
        if top >= NEAR_CONSTANT_SHARE:
            findings.append(Finding(
                "near_constant_column", "info", f"column {name!r}: one value covers {top:.1%} of rows",
                column=str(name), evidence={"top_share": top},
                fix=f"usually safe to drop: data.drop=[{name}]"))
    return profile


def _duplicates(prepared: PreparedData, raw: pd.DataFrame, findings: list[Finding]) -> None:
    exact = int(raw.duplicated().sum())
    if exact:
        removed = prepared.clean.duplicate_rows
        findings.append(Finding(
            "duplicate_rows", "warning",
            f"{exact} {'rows repeat' if exact > 1 else 'row repeats'} an earlier row exactly"
            + (f"; {removed} were removed before the split (data.drop_duplicates)" if removed
               else "; they were kept, each row's copies in one split part (data.drop_duplicates is"
                    " false)"),
            evidence={"count": exact, "removed": removed},
            fix=None if removed else "data.drop_duplicates=true if the repeats are not real observations"))
    plan, frame, split = prepared.plan, prepared.frame, prepared.split
    # image / text / sequence columns count too (as text: a sequence cell may be a list)
    columns = plan.inputs + [c for c in prepared.preprocessor.input_columns() if c not in plan.inputs]
    table = frame[columns + [plan.target]]
    table = table.astype(str) if prepared.preprocessor.inputs else table
    inputs = row_hashes(table[columns])
    full = row_hashes(table)
    from fitwell.data.prepare import whole_rows  # a copy: every column alike, dropped IDs too

    whole = whole_rows(frame, raw)
    copies = full if whole is frame else row_hashes(whole)
    train_full = set(copies[split.train].tolist())
    for part in ("val", "test"):
        rows = getattr(split, part)
        shared = [int(r) for r in rows if copies[r] in train_full]
        if shared:
            findings.append(Finding(
                "duplicates_across_splits", "error",
                f"{len(shared)} {part} rows are exact copies of training rows (first: row"
                f" {frame.index[shared[0]]}); the {part} score is inflated by memorised rows",
                evidence={"split": part, "count": len(shared), "rows": [frame.index[r] for r in shared[:20]]},
                fix="data.drop_duplicates=true, or split.method=group with split.group_column set to"
                    " the entity the copies share"))
    conflicts = pd.DataFrame({"x": inputs, "y": full}).groupby("x")["y"].nunique()
    conflicting = int((conflicts > 1).sum())
    if conflicting:
        findings.append(Finding(
            "conflicting_labels", "warning",
            f"{conflicting} groups of rows have identical inputs but different {plan.target!r} values",
            column=plan.target, evidence={"groups": conflicting},
            fix="check the labels; the model cannot do better than the noise they add"))


def _imbalance(prepared: PreparedData, config: RunConfig, findings: list[Finding]) -> dict[str, int]:
    target = prepared.frame[prepared.plan.target].iloc[prepared.split.train]
    counts = target.value_counts()
    ratio = float(counts.min() / counts.max())
    train = config.train
    in_use = [name for name, on in (("train.class_weights", train.class_weights is not None),
                                    ("train.loss=focal", train.loss == "focal"),
                                    ("train.resample", train.resample is not None)) if on]
    if ratio < config.audit.imbalance_ratio:
        minority = counts.idxmin()
        findings.append(Finding(
            "class_imbalance", "info" if in_use else "warning",
            f"class {minority!r} has {counts.min()} training rows against {counts.max()} for"
            f" {counts.idxmax()!r} (ratio {ratio:.3f})"
            + (f"; remedy in use: {', '.join(in_use)}" if in_use else ""),
            column=prepared.plan.target,
            evidence={"ratio": ratio, "counts": {str(k): int(v) for k, v in counts.items()}},
            fix="train.class_weights=balanced, train.loss=focal, or train.resample.method=smote"
                " (training split only); judge by roc_auc / balanced accuracy, not accuracy"))
    return {str(k): int(v) for k, v in prepared.frame[prepared.plan.target].value_counts().items()}


def _shift(prepared: PreparedData, config: RunConfig, findings: list[Finding]) -> None:
    from scipy.stats import ks_2samp

    plan, frame, split = prepared.plan, prepared.frame, prepared.split
    parts = [(part, getattr(split, part)) for part in ("val", "test") if len(getattr(split, part)) >= 10]
    tests = max(1, len(parts) * len(plan.kinds))
    for name, kind in plan.kinds.items():
        if kind == "text":  # every value its own: a category comparison would always see a shift
            continue
        numeric = kind == "numeric"
        column = frame[name]
        base = column.iloc[split.train]
        for part, rows in parts:
            other = column.iloc[rows]
            if numeric:
                e = pd.to_numeric(base, errors="coerce").to_numpy(float)
                a = pd.to_numeric(other, errors="coerce").to_numpy(float)
                psi = population_stability(e, a, psi_bins(len(e), len(a)))
                e, a = e[np.isfinite(e)], a[np.isfinite(a)]
                ks = ks_2samp(e, a) if len(e) and len(a) else None
                significant = ks is not None and ks.pvalue < 0.01 / tests
                evidence = {"split": part, "psi": psi, "ks_statistic": float(ks.statistic) if ks else None,
                            "ks_pvalue": float(ks.pvalue) if ks else None}
            else:
                psi = population_stability(category_keys(base), category_keys(other), categorical=True)
                significant, evidence = True, {"split": part, "psi": psi}
            if psi >= config.audit.shift_psi and significant:
                findings.append(Finding(
                    "distribution_shift", "warning",
                    f"column {name!r} is distributed differently in the {part} split than in train"
                    f" (PSI {psi:.2f}" + (f", KS p={evidence['ks_pvalue']:.2g}" if numeric else "") + ")",
                    column=str(name), evidence=evidence,
                    fix="expected with split.method=time (the world changed); otherwise check how the rows"
                        " were collected, or use split.method=stratified/random"))
