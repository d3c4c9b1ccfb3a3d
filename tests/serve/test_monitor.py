"""`fitwell monitor`: the run's drift reference against new files, through the CLI."""

from __future__ import annotations

import json

import pytest

from fitwell.cli import run_cli
from tests.conftest import make_mixed_frame
from tests.test_cli import only_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitor")
    make_mixed_frame(0, 600).to_csv(folder / "train.csv", index=False)
    (folder / "run.yaml").write_text(f"data: {{source: {folder / 'train.csv'}, target: label}}\n"
                                     "train: {epochs: 8, progress: false}\n"
                                     f"track: {{runs_dir: {folder / 'runs'}}}\n")
    assert run_cli(["train", str(folder / "run.yaml")]) == 0
    return only_run(folder / "runs")


def check(run, tmp_path, frame, *extra) -> tuple[int, dict]:
    frame.to_csv(tmp_path / "new.csv", index=False)
    code = run_cli(["monitor", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "m"),
                    *extra])
    return code, json.loads((tmp_path / "m" / "drift.json").read_text())


def test_new_rows_from_the_same_population_pass(run, tmp_path, capsys):
    code, result = check(run, tmp_path, make_mixed_frame(1, 600), "--labels")
    assert code == 0 and result["alert"] is False, result["alerts"]
    assert result["performance"]["metric"] == "roc_auc" and result["performance"]["worse"] is False
    assert (tmp_path / "m" / "drift.html").read_text().count("<tr>") >= 6


def test_a_shifted_feature_alerts_with_exit_code_3(run, tmp_path, capsys):
    new = make_mixed_frame(2, 600)
    new["x1"] = new["x1"] + 1.0  # one standard deviation
    code, result = check(run, tmp_path, new)
    assert code == 3
    assert "x1" in result["drifted_columns"] and "x2" not in result["drifted_columns"]
    assert "alert" in capsys.readouterr().err


def test_labels_that_no_longer_follow_the_features_alert_on_performance(run, tmp_path, capsys):
    new = make_mixed_frame(3, 600)
    new["label"] = new["label"].sample(frac=1, random_state=0).to_numpy()  # the relation is gone
    code, result = check(run, tmp_path, new, "--labels")
    assert code == 3 and result["performance"]["worse"] is True
    assert any(a.startswith("performance: roc_auc") for a in result["alerts"])


def test_thresholds_can_be_set_per_call_and_labels_need_the_target(run, tmp_path, capsys):
    new = make_mixed_frame(4, 600)
    new["x1"] = new["x1"] + 1.0
    code, result = check(run, tmp_path, new, "monitor.wasserstein=5", "monitor.psi=5")
    assert code == 0 and result["thresholds"]["wasserstein"] == 5
    new.drop(columns=["label"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    assert run_cli(["monitor", str(run), "--data", str(tmp_path / "unlabelled.csv"), "--labels"]) == 2
    assert "no 'label' column" in capsys.readouterr().err


def test_ensemble_runs_carry_a_reference_and_are_monitored(tmp_path, capsys):
    make_mixed_frame(0, 400).to_csv(tmp_path / "train.csv", index=False)
    assert run_cli(["train", str(tmp_path / "train.csv"), "--target", "label", "--preset", "fast",
                    f"track.runs_dir={tmp_path / 'runs'}", "track.name=ens"]) == 0
    new = make_mixed_frame(5, 400)
    new["x2"] = new["x2"] - 1.0
    code, result = check(tmp_path / "runs" / "ens", tmp_path, new, "--labels")
    assert code == 3 and result["drifted_columns"] == ["x2"]
    assert result["performance"]["metric"] == "roc_auc"
