"""The BLT mechanism: its coefficients, sensitivity and noise, and a private run on it."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

import fitwell
from fitwell.engine.losses import build_loss
from fitwell.privacy.blt import (
    BufferedNoise,
    blt_coefficients,
    coefficients,
    inverse_coefficients,
    optimise,
    sensitivity,
    total_error,
)
from fitwell.privacy.dpsgd import PrivacyPlan
from tests.conftest import make_mixed_frame
from tests.privacy.test_dpsgd import private_config

THETA, OMEGA = np.array([0.25, 0.05]), np.array([0.4, 0.9])


def test_the_coefficients_and_the_sensitivity_follow_their_definitions():
    n, b = 12, 4
    c = blt_coefficients(THETA, OMEGA, n)
    assert np.allclose(c, coefficients(inverse_coefficients(THETA, OMEGA, n)))  # the series inverse
    assert np.all(c >= 0) and np.all(np.diff(c) <= 1e-12)  # where the first-participations rule holds
    matrix = np.array([[c[i - j] if i >= j else 0.0 for j in range(n)] for i in range(n)])
    worst = 0.0
    for size in range(1, 4):  # every participation set with steps at least b apart
        for steps in itertools.combinations(range(n), size):
            if all(y - x >= b for x, y in itertools.pairwise(steps)):
                worst = max(worst, sum(matrix[:, i] @ matrix[:, j] for i in steps for j in steps))
    assert sensitivity(c, b) == pytest.approx(math.sqrt(worst))


def test_the_noise_has_the_factorizations_covariance():
    n = 6
    plan = PrivacyPlan(1.0, 1e-5, 2.0, 0.1, 1.0, n, 1.0, "rdp", "ghost", mechanism="blt",
                       blt=(tuple(THETA), tuple(OMEGA), 1.0))
    model = torch.nn.Linear(1, 1, bias=False)
    private = BufferedNoise(plan, seed=0, per_epoch=n)
    private.wrap(model, torch.optim.SGD(model.parameters(), lr=0.0), build_loss("mse", "regression"))
    draws = []
    for seed in range(4000):  # a fresh run of n steps each time: empty buffers, its own draws
        torch.manual_seed(seed)
        for buffer in private.buffers:
            for b in buffer:
                b.zero_()
        row = []
        for _ in range(n):
            model.weight.grad = torch.zeros_like(model.weight)
            private.add_noise(None)
            row.append(float(model.weight.grad))
        draws.append(row)
    inverse = np.array([[inverse_coefficients(THETA, OMEGA, n)[i - j] if i >= j else 0.0 for j in range(n)]
                        for i in range(n)])
    assert np.allclose(np.cov(np.array(draws).T), 4.0 * inverse @ inverse.T, atol=0.35)


def test_the_optimised_noise_is_far_below_uncorrelated_noise():
    n, b = 200, 20
    theta, omega = optimise(n, b)
    ratio = (total_error(inverse_coefficients(np.array(theta), np.array(omega), n))
             * sensitivity(blt_coefficients(np.array(theta), np.array(omega), n), b) ** 2
             / (total_error(np.r_[1.0, np.zeros(n - 1)]) * n / b))
    assert ratio < 0.3  # measured 0.06-0.11 on 100-3000 steps


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_a_blt_run_takes_each_row_at_one_place_and_spends_its_budget(tmp_path):
    run = fitwell.train(private_config(mechanism="blt"), {"track.runs_dir": str(tmp_path), "train.epochs": 8,
                                                          "train.lr": 0.02}, data=make_mixed_frame(n=3000))
    privacy = json.loads(run.dir.metrics.read_text())["privacy"]
    assert privacy["mechanism"] == "blt" and privacy["epsilon"] == pytest.approx(2.0)
    assert run.metrics["roc_auc"] > 0.6
    plan = PrivacyPlan(1.0, 1e-5, 2.0, 0.1, 32.0, 40, 1.0, "rdp", "ghost", mechanism="blt",
                       blt=(tuple(THETA), tuple(OMEGA), 1.0))
    order = BufferedNoise(plan, seed=0, per_epoch=4)
    cpu = torch.device("cpu")
    assert torch.equal(order.sample(100, 0, 2, cpu), order.sample(100, 5, 2, cpu))  # same place every epoch
