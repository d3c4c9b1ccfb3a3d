"""DP-FTRL: tree-aggregated noise, its accounting, and a private run that assumes no sampling."""

import json

import numpy as np
import pytest
import torch

import fitwell
from fitwell.config import load_config
from fitwell.engine.losses import build_loss
from fitwell.privacy.dpsgd import PrivacyPlan
from fitwell.privacy.ftrl import TreeAggregationTraining, TreeNoise, ftrl_epsilon, plan_ftrl, tree_nodes
from tests.privacy.test_dpsgd import private_config


def test_the_prefix_noise_has_the_trees_covariance():
    draws = np.array([[float(TreeNoise([torch.Size([1])], 1.0, seed, 0).prefix(t)[0]) for t in range(1, 9)]
                      for seed in range(3000)])
    shared = np.array([[len(set(tree_nodes(s)) & set(tree_nodes(t))) for t in range(1, 9)]
                       for s in range(1, 9)])
    assert np.allclose(np.cov(draws.T), shared, atol=0.12)  # e.g. Var(prefix(7)) = 3 nodes, (4) and (8): 0
    assert shared[6, 6] == 3 and shared[3, 7] == 0


def test_the_optimizer_sees_the_difference_so_the_updates_sum_to_the_prefix_noise():
    model = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    plan = PrivacyPlan(1.0, 1e-5, 2.0, 0.1, 4.0, 12, 0.5, "rdp", "ghost", mechanism="dp-ftrl")
    private = TreeAggregationTraining(plan, seed=5, per_epoch=6)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    _, optimizer, _ = private.wrap(model, sgd, build_loss("mse", "regression"))
    for step in range(5):
        private.sample(24, 0, step, torch.device("cpu"))
        optimizer.zero_grad(set_to_none=True)
        model.weight.grad = torch.zeros_like(model.weight)  # nothing to learn: only the noise moves it
        optimizer.step()
    expected = TreeNoise([model.weight.shape], 2.0 * 0.5, 5, 0).prefix(5)[0] / 4.0
    torch.testing.assert_close(-model.weight.detach(), expected)


def test_every_row_is_taken_once_an_epoch():
    plan = PrivacyPlan(1.0, 1e-5, 2.0, 0.1, 32.0, 40, 1.0, "rdp", "ghost", mechanism="dp-ftrl")
    private = TreeAggregationTraining(plan, seed=0, per_epoch=4)
    rows = torch.cat([private.sample(100, 3, b, torch.device("cpu")) for b in range(4)])
    assert sorted(rows.tolist()) == list(range(100))


def test_the_noise_is_calibrated_to_the_budget_without_amplification():
    config = load_config({**private_config(mechanism="dp-ftrl"), "train": {"epochs": 5, "batch_size": 100}})
    plan = plan_ftrl(config, 2000, 2.0, 1e-5)
    spent = ftrl_epsilon(plan.noise_multiplier, 20, plan.steps, 1e-5)
    assert 1.99 < spent <= 2.0 and plan.steps == 100
    assert ftrl_epsilon(plan.noise_multiplier * 1.5, 20, plan.steps, 1e-5) < spent


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_a_dp_ftrl_run_trains_and_spends_its_budget(tmp_path):
    from tests.conftest import make_mixed_frame

    run = fitwell.train(private_config(mechanism="dp-ftrl"), {"track.runs_dir": str(tmp_path),
                                                              "train.epochs": 8, "train.lr": 0.02},
                        data=make_mixed_frame(n=3000))
    privacy = json.loads(run.dir.metrics.read_text())["privacy"]
    assert privacy["mechanism"] == "dp-ftrl" and 1.95 < privacy["epsilon"] <= 2.0
    assert run.metrics["roc_auc"] > 0.6  # 0.67 here: no amplification by sampling, so more noise
