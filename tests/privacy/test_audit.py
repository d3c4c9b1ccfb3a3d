"""The privacy audit: membership-inference attacks and the empirical lower bound on epsilon."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import fitwell
from fitwell.cli import app
from fitwell.privacy.audit import attack_scores, epsilon_lower_bound
from tests.conftest import make_mixed_frame


def randomized_response(epsilon: float, n: int, seed: int = 0):
    """An epsilon-DP mechanism with a known answer: say 'member' with probability e^eps / (1 + e^eps)."""
    rng = np.random.default_rng(seed)
    member = np.repeat([True, False], n)
    truthful = rng.random(2 * n) < math.exp(epsilon) / (1 + math.exp(epsilon))
    return np.where(truthful, member, ~member).astype(float), member


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_the_lower_bound_is_below_a_known_epsilon_and_not_far_below(epsilon):
    scores, member = randomized_response(epsilon, 20_000)
    bound = epsilon_lower_bound(scores, member, 0.0, seed=1)
    assert 0.8 * epsilon < bound <= epsilon  # valid (95% intervals) and tight at 20,000 rows a side


def test_no_signal_gives_no_epsilon_and_an_auc_of_one_half():
    rng = np.random.default_rng(0)
    scores, member = rng.normal(size=4000), np.repeat([True, False], 2000)
    assert epsilon_lower_bound(scores, member, 1e-5, seed=0) < 0.15
    assert abs(attack_scores(scores, member)["roc_auc"] - 0.5) < 0.03


def config(**extra):
    return {"data": {"target": "label"}, "split": {"train": 0.5, "val": 0.1, "test": 0.4},
            "model": {"hidden_sizes": [256, 256], "dropout": 0.0},
            "train": {"epochs": 60, "batch_size": 32, "lr": 0.003, "progress": False,
                      "early_stopping": {"enabled": False}}, "track": {"report": False}, **extra}


def test_an_overfit_model_leaks_and_a_private_one_does_not(tmp_path):
    frame = make_mixed_frame(n=800, seed=3)
    frame["label"] = np.where(np.random.default_rng(0).random(800) < 0.3, 1 - frame["label"], frame["label"])
    plain = fitwell.train(config(), {"track.runs_dir": str(tmp_path)}, data=frame)
    leaked = fitwell.privacy_audit(plain.path, frame, reference=False)
    assert leaked["attacks"]["loss"]["roc_auc"] > 0.65 and leaked["epsilon_lower_bound"] > 1.0
    private = fitwell.train(config(privacy={"epsilon": 1.0, "preprocessing_epsilon": 0.2}),
                            {"track.runs_dir": str(tmp_path), "train.epochs": 10}, data=frame)
    audited = fitwell.privacy_audit(private.path, frame, seed=1)
    assert audited["attacks"]["loss"]["roc_auc"] < 0.58
    assert audited["epsilon_lower_bound"] <= audited["claimed_epsilon"] <= 1.0
    assert json.loads((private.path / "privacy_audit.json").read_text())["members"] == audited["members"]
    assert "Privacy audit" in (private.path / "report.html").read_text()


def test_the_command_prints_the_attacks(tmp_path):
    frame = make_mixed_frame(n=300)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    run = fitwell.train({**config(), "data": {"source": str(path), "target": "label"}},
                        {"track.runs_dir": str(tmp_path), "train.epochs": 3})
    result = CliRunner().invoke(app, ["privacy-audit", str(run.path), "--no-reference"])
    assert result.exit_code == 0, result.output
    assert "loss" in result.output and "empirical epsilon >=" in result.output
    assert "the run is not private" in result.output
