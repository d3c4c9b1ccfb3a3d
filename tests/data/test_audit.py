"""The data audit finds each planted defect, and stays quiet (no errors) on clean data."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from fitwell.cli import run_cli
from fitwell.config import load_config
from fitwell.data.audit import audit, outlier_counts, population_stability
from fitwell.data.prepare import prepare
from fitwell.errors import DataError
from fitwell.pipeline import train


def clean_frame(n=600, seed=0, weights=None) -> pd.DataFrame:
    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, random_state=seed,
                               weights=weights, flip_y=0.05)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["label"] = y
    return frame


def run_audit(frame, **sections):
    config = load_config({"data": {"target": "label", **sections.pop("data", {})}, **sections})
    return audit(prepare(config, frame), config)


def checks(report, severity=None):
    return {(f.check, f.column) for f in report.findings if severity in (None, f.severity)}


def test_clean_dataset_has_no_errors():
    report = run_audit(clean_frame())
    assert report.counts["error"] == 0
    assert not any(f.check in ("target_leakage", "duplicates_across_splits", "class_imbalance",
                               "constant_column", "outliers") and f.severity != "info"
                   for f in report.findings)
    assert {c["name"] for c in report.columns} == {"x0", "x1", "x2", "x3", "x4", "label"}


def test_planted_defects_are_each_found():
    frame = clean_frame()
    rng = np.random.default_rng(1)
    frame["leak"] = frame["label"] * 3.0 + rng.normal(scale=0.01, size=len(frame))
    frame["const"] = 7
    outliers = rng.choice(len(frame), size=30, replace=False)  # 5%
    frame.loc[outliers, "x1"] = 80.0
    copies = frame.sample(60, random_state=0)
    frame = pd.concat([frame, copies], ignore_index=True)
    report = run_audit(frame, data={"drop_duplicates": False})
    errors = checks(report, "error")
    assert ("target_leakage", "leak") in errors
    # identical rows are kept in one split part, so none crosses train and test
    assert ("duplicates_across_splits", None) not in errors
    assert ("constant_column", "const") in checks(report, "warning")
    assert ("outliers", "x1") in checks(report, "warning")
    assert ("duplicate_rows", None) in checks(report, "warning")
    outlier = next(f for f in report.findings if f.check == "outliers" and f.column == "x1")
    assert outlier.evidence["far_out_count"] >= 30
    leak = next(f for f in report.findings if f.check == "target_leakage")
    assert leak.evidence["score"] > 0.99 and "data.drop=[leak]" in leak.fix
    # the real columns are not accused
    assert not {c for k, c in errors if k == "target_leakage"} - {"leak"}


def test_duplicates_removed_before_the_split_do_not_leak():
    frame = clean_frame()
    frame = pd.concat([frame, frame.head(40)], ignore_index=True)
    report = run_audit(frame, data={"drop_duplicates": True})
    assert "duplicates_across_splits" not in {k for k, _ in checks(report)}
    dup = next(f for f in report.findings if f.check == "duplicate_rows")
    assert dup.evidence == {"count": 40, "removed": 40}


def test_records_that_share_features_but_not_their_id_are_split_like_any_rows():
    """Passengers with the same class, sex and (missing) age are different people: their rows
    differ in the name the run drops as an ID. They are split at random -- blocks of them moved
    into training had left the test split without its commonest rows (a test ROC AUC of 0.66 on
    Titanic where out-of-fold scores read 0.84) -- and the audit does not call them copies."""
    rng = np.random.default_rng(0)
    n = 900
    frame = pd.DataFrame({"passenger": [f"P{i:05d}-{rng.integers(1000)}" for i in range(n)],
                          "cls": rng.choice(["1st", "2nd", "3rd"], n), "sex": rng.choice(["f", "m"], n)})
    frame["label"] = ((frame["sex"] == "f") ^ (rng.random(n) < 0.2)).astype(int)
    prepared = prepare(load_config({"data": {"target": "label"}}), frame)
    assert "passenger" in prepared.plan.dropped
    sizes = prepared.split.sizes()
    assert sizes["test"] == round(0.15 * n) and sizes["val"] == round(0.15 * n)  # no block moved
    report = audit(prepared, load_config({"data": {"target": "label"}}))
    assert "duplicates_across_splits" not in {k for k, _ in checks(report)}


def test_class_imbalance_names_the_remedies():
    report = run_audit(clean_frame(n=1000, weights=[0.95]))
    finding = next(f for f in report.findings if f.check == "class_imbalance")
    assert finding.severity == "warning" and finding.evidence["ratio"] < 0.1
    assert "train.class_weights=balanced" in finding.fix and "smote" in finding.fix
    remedied = run_audit(clean_frame(n=1000, weights=[0.95]), train={"class_weights": "balanced"})
    assert next(f for f in remedied.findings if f.check == "class_imbalance").severity == "info"


def test_shift_between_time_ordered_splits():
    frame = clean_frame(n=800)
    frame["when"] = np.arange(len(frame))
    frame["drift"] = np.linspace(0, 10, len(frame)) + np.random.default_rng(0).normal(size=len(frame))
    report = run_audit(frame, data={"columns": {"when": "drop"}},
                       split={"method": "time", "time_column": "when"})
    shifted = {f.column for f in report.findings if f.check == "distribution_shift"}
    assert "drift" in shifted and not shifted & {"x0", "x1", "x2", "x3", "x4"}
    finding = next(f for f in report.findings if f.column == "drift")
    assert finding.evidence["psi"] > 1 and finding.evidence["ks_pvalue"] < 1e-6


@pytest.mark.parametrize("shift, low, high", [
    (0.0, 0.0, 0.02),  # same distribution
    (0.5, 0.1, 0.5),   # half a standard deviation
    (3.0, 2.0, 20.0),  # far apart
])
def test_population_stability(shift, low, high):
    rng = np.random.default_rng(0)
    assert low <= population_stability(rng.normal(size=5000), rng.normal(shift, size=5000)) <= high


def test_population_stability_of_categories():
    same = np.array(["a", "b"] * 500)
    assert population_stability(same, same, categorical=True) == pytest.approx(0.0)
    assert population_stability(same, np.array(["a"] * 900 + ["b"] * 100), categorical=True) > 0.25


def test_outlier_counts():
    values = np.r_[np.random.default_rng(0).normal(size=1000), [40.0] * 10, np.nan]
    iqr, z = outlier_counts(values)
    assert z == 10 and iqr >= 10


def test_cli_audit_fails_on_error_and_writes_json(tmp_path, capsys):
    frame = clean_frame()
    frame["leak"] = frame["label"]
    leaky, clean = tmp_path / "leaky.csv", tmp_path / "clean.csv"
    frame.to_csv(leaky, index=False)
    clean_frame().to_csv(clean, index=False)
    out = tmp_path / "audit.json"
    code = run_cli(["audit", str(leaky), "--target", "label", "--fail-on", "error", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "target_leakage" in captured.out and "audit failed" in captured.err
    saved = json.loads(out.read_text())
    assert saved["counts"]["error"] >= 1 and saved["findings"][0]["severity"] == "error"
    assert run_cli(["audit", str(clean), "--target", "label", "--fail-on", "error"]) == 0
    assert run_cli(["audit", str(clean), "--target", "label", "--fail-on", "bad"]) == 2


def test_train_saves_the_audit_and_can_stop_on_it(tmp_path):
    frame = clean_frame()
    frame["leak"] = frame["label"]
    sections = {"data": {"target": "label"}, "train": {"epochs": 2, "progress": False},
                "track": {"runs_dir": str(tmp_path)}}
    run = train(sections, data=frame)
    saved = json.loads((run.path / "audit.json").read_text())
    assert any(f["check"] == "target_leakage" and f["column"] == "leak" for f in saved["findings"])
    with pytest.raises(DataError, match=r"audit.fail_on=error[\s\S]*target_leakage"):
        train(sections, {"audit.fail_on": "error"}, data=frame)
