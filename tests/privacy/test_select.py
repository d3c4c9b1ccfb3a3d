"""Private hyperparameter search: random trial counts, noised scores, one epsilon for it all."""

import json

import numpy as np
import pytest

import fitwell
from fitwell.config import load_config
from fitwell.errors import ConfigError
from fitwell.privacy.select import ORDERS, check_private_search, sample_trials, selection_epsilon
from fitwell.tune import tune
from tests.conftest import make_mixed_frame
from tests.privacy.test_dpsgd import private_config


def test_more_trials_cost_more_and_the_search_costs_more_than_a_trial():
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    rdp = np.asarray(compute_rdp(q=0.01, noise_multiplier=1.0, steps=1000, orders=ORDERS))
    one, _ = get_privacy_spent(orders=ORDERS, rdp=rdp, delta=1e-6)
    searches = [selection_epsilon(rdp, mean, 1e-6) for mean in (2, 5, 20)]
    assert one < searches[0] < searches[1] < searches[2] < 4 * one  # a few times a trial, not 20x


def test_the_trial_count_is_random_with_the_asked_mean_and_repeatable():
    counts = [sample_trials(5, seed) for seed in range(2000)]
    assert min(counts) >= 1 and len(set(counts)) > 5 and abs(np.mean(counts) - 5) < 0.3
    assert sample_trials(5, 7) == sample_trials(5, 7)


def search(**tune_values):
    config = private_config()
    config["tune"] = {"metric": "val_loss", "trials": 3, "sampler": "random", "pruner": "none",
                      "space": {"train.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}},
                      **tune_values}
    return config


def test_a_private_search_refuses_what_breaks_its_accounting():
    with pytest.raises(ConfigError) as err:
        check_private_search(load_config(search(sampler="tpe", pruner="median", space={
            "train.epochs": {"type": "int", "low": 2, "high": 9}})))
    message = str(err.value)
    assert "tune.sampler: tpe" in message and "tune.pruner" in message and "train.epochs" in message


def test_a_private_search_keeps_its_best_trial_and_states_one_epsilon(tmp_path):
    frame = make_mixed_frame(n=2000)
    summary = tune(search(), {"track.runs_dir": str(tmp_path)}, data=frame)
    privacy = summary["privacy"]
    trial = json.loads((tmp_path / "study" / f"trial-{summary['best_trial']}" / "metrics.json").read_text())
    assert trial["privacy"]["validation"]["val_loss"] == pytest.approx(summary["best_validation"])
    assert trial["privacy"]["epsilon"] <= 2.0 and trial["test"] == summary["test"]  # kept, scored once
    assert trial["privacy"]["epsilon"] < privacy["epsilon"] < 4 * trial["privacy"]["epsilon"]
    assert summary["best_run"].endswith(f"trial-{summary['best_trial']}") and summary["test"]["roc_auc"] > 0.6
    assert fitwell.Run(summary["best_run"]).predict(frame.head(3)).shape[0] == 3
