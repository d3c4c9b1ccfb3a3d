"""Differentially private training (DP-SGD through Opacus): the step, the batches, the budget."""

import json

import pytest
import torch
from safetensors.torch import load_file

import fitwell
from fitwell.config import load_config
from fitwell.engine.losses import build_loss
from fitwell.errors import ConfigError
from fitwell.models import MLP
from fitwell.privacy.dpsgd import (
    PrivacyPlan,
    PrivateTraining,
    plan_privacy,
    private_layers_problem,
    resolve_delta,
)
from tests.conftest import make_mixed_frame
from tests.engine.test_loop import StopAt


def plan(clipping="ghost", noise=0.0, norm=0.05, batch=8.0, rate=0.1, steps=10):
    return PrivacyPlan(epsilon=1.0, delta=1e-5, noise_multiplier=noise, sample_rate=rate,
                       expected_batch_size=batch, steps=steps, max_grad_norm=norm, accountant="rdp",
                       clipping=clipping)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("clipping", ["ghost", "opacus_ghost", "per_sample"])
def test_a_private_step_is_the_sum_of_clipped_row_gradients_over_the_expected_batch(clipping):
    """Each row's gradient computed independently (torch.func.vmap), clipped to 0.05 and summed:
    every clipping path takes exactly that step (noise 0, SGD at rate 1) to 1e-5."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = MLP(4, [5, 3], 1, hidden_sizes=[8, 8], dropout=0.0)
    numeric = torch.randn(10, 4)
    codes = torch.stack([torch.randint(0, 5, (10,)), torch.randint(0, 3, (10,))], 1)  # two embeddings
    target = torch.randint(0, 2, (10,))
    loss_fn = build_loss("auto", "binary")
    params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def row_loss(weights, x, c, y):
        return loss_fn(functional_call(model, weights, (x[None], c[None])), y[None])

    rows = vmap(grad(row_loss), in_dims=(None, 0, 0, 0))(params, numeric, codes, target)
    norms = torch.sqrt(sum(g.reshape(10, -1).pow(2).sum(1) for g in rows.values()))
    factor = (0.05 / norms).clamp(max=1.0)
    assert int((norms > 0.05).sum()) >= 5  # the bound bites on most rows
    assert bool((norms * factor <= 0.05 + 1e-7).all())  # after clipping every row is within the bound
    expected = {name: (g * factor.view(-1, *[1] * (g.dim() - 1))).sum(0) / 8.0 for name, g in rows.items()}
    module, optimizer, train_loss = PrivateTraining(plan(clipping), seed=0).wrap(
        model, torch.optim.SGD(model.parameters(), lr=1.0), loss_fn)
    train_loss(module(numeric, codes), target).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(params[name] - p.detach(), expected[name], rtol=1e-5, atol=1e-6)


def test_noise_has_the_calibrated_scale():
    torch.manual_seed(0)
    model = torch.nn.Linear(200, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    _, optimizer, _ = PrivateTraining(plan(noise=2.0, norm=0.5, batch=4.0), seed=0).wrap(
        model, torch.optim.SGD(model.parameters(), lr=1.0), build_loss("mse", "regression"))
    for p in model.parameters():  # an empty Poisson sample: zero gradient, the step is the noise alone
        p.grad = torch.zeros_like(p)
    optimizer.step()
    step = -model.weight.detach().reshape(-1)
    assert abs(float(step.std()) - 2.0 * 0.5 / 4.0) < 0.05  # sd = noise multiplier * bound / batch


def test_poisson_batches_vary_in_size_and_replay_exactly():
    private = PrivateTraining(plan(rate=0.1), seed=3)
    sizes = [len(private.sample(1000, 0, step, torch.device("cpu"))) for step in range(200)]
    assert len(set(sizes)) > 10  # Poisson sampling, not fixed slices
    assert abs(sum(sizes) / 200 - 100) < 3 * (1000 * 0.1 * 0.9 / 200) ** 0.5 + 1
    assert torch.equal(private.sample(1000, 2, 5, torch.device("cpu")),
                       PrivateTraining(plan(rate=0.1), seed=3).sample(1000, 2, 5, torch.device("cpu")))
    assert not torch.equal(private.sample(1000, 2, 5, torch.device("cpu")),
                           private.sample(1000, 2, 6, torch.device("cpu")))


PUBLIC = {"bounds": {"x1": [-4, 4], "x2": [-4, 4]},
          "categories": {"color": ["red", "blue", "green"], "city": [f"city{i}" for i in range(25)]}}


def private_config(**privacy):
    """mixed_frame's columns with public ranges and lists: no statistic comes from the rows."""
    return {"data": {"target": "label"}, "model": {"hidden_sizes": [32]},
            "preprocess": {"scale": "minmax_symmetric", "impute_numeric": "constant"},
            "train": {"epochs": 6, "batch_size": 128, "lr": 0.01, "progress": False},
            "privacy": {"epsilon": 2.0, **PUBLIC, **privacy}, "track": {"report": False}}


@pytest.fixture(scope="module")
def patients():
    return make_mixed_frame(n=3000)  # DP needs rows: at 200 no signal survives epsilon 2


def test_a_private_run_spends_its_budget_and_says_so(tmp_path, patients):
    run = fitwell.train(private_config(), {"track.runs_dir": str(tmp_path)}, data=patients)
    saved = json.loads(run.dir.metrics.read_text())
    privacy = saved["privacy"]
    assert 1.9 <= privacy["epsilon"] <= 2.0 and privacy["target_epsilon"] == 2.0
    rows = saved["split"]["train"]
    assert privacy["delta"] == 1e-5 and privacy["steps"] == privacy["planned_steps"] == 6 * round(rows / 128)
    assert privacy["noise_multiplier"] > 0.5 and privacy["preprocessing"]["epsilon"] == 0
    assert any("audit" in line for line in privacy["not_covered"])
    spent = [row["epsilon"] for row in run.history]
    assert spent == sorted(spent) and spent[0] < spent[-1] <= 2.0
    assert saved["epochs"] == 6  # early stopping is off: validation rows do not pick the weights
    assert run.metrics["roc_auc"] > 0.75  # the signal survives the noise (0.85 here; 0.99 without DP)


def test_a_larger_budget_needs_less_noise():
    def sigma(epsilon):
        config = load_config({**private_config(epsilon=epsilon, accountant="rdp"),
                              "train": {"epochs": 10, "batch_size": 32}})
        return plan_privacy(config, 1000).noise_multiplier

    assert sigma(1.0) > sigma(3.0) > sigma(8.0) > 0


@pytest.mark.parametrize("settings", [{"mechanism": "dp-sgd", "max_grad_norm": "auto"},
                                      {"mechanism": "dp-ftrl"}, {"mechanism": "blt"}])
def test_a_private_run_resumes_exactly(tmp_path, patients, settings):
    config = private_config(**settings)
    whole = fitwell.train(config, {"track.runs_dir": str(tmp_path / "a")}, data=patients)
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, {"track.runs_dir": str(tmp_path / "b"), "track.name": "r"},
                      data=patients, callbacks=[StopAt(3)])
    resumed = fitwell.train(resume=tmp_path / "b" / "r", data=patients)
    a, b = load_file(whole.dir.model), load_file(resumed.dir.model)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same batches, same noise
    assert [r["epsilon"] for r in resumed.history] == [r["epsilon"] for r in whole.history]


def test_bad_budgets_are_refused_by_key():
    with pytest.raises(ConfigError, match="privacy.epsilon"):
        load_config(private_config(epsilon=0))
    with pytest.raises(ConfigError, match=r"privacy\.delta: 0.01 must be in \(0, 1/n\)"):
        resolve_delta(0.01, 1000)
    assert resolve_delta("auto", 1000) == 1e-5 and resolve_delta("auto", 2_000_000) == 1e-8
    with pytest.raises(ConfigError, match="privacy.epsilon: 1e-06 is too small"):
        plan_privacy(load_config(private_config(epsilon=1e-6)), 300)


def test_settings_a_private_run_cannot_keep_are_named_with_the_fix():
    config = private_config()
    config["train"] = {**config["train"], "l2": 0.01, "clip_grad_norm": 1.0, "class_weights": "balanced"}
    with pytest.raises(ConfigError) as err:
        load_config(config)
    message = str(err.value)
    assert "train.l1 / train.l2" in message and "train.weight_decay" in message
    assert "privacy.max_grad_norm" in message and "train.class_weights" in message


def test_batch_norm_is_turned_off_or_refused(tmp_path, mixed_frame):
    config = {**private_config(), "model": {"hidden_sizes": [16], "batch_norm": True}}
    run = fitwell.train(config, {"track.runs_dir": str(tmp_path), "train.epochs": 1}, data=mixed_frame)
    assert "batch_norm: false" in run.dir.config.read_text()
    with pytest.raises(ConfigError, match="model.batch_norm"):
        load_config({**config, "privacy": {"epsilon": 2.0, "fix_batch_norm": False}})
    layers = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert "BatchNorm" in private_layers_problem(layers)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_epsilon_agrees_with_googles_dp_accounting(accountant):
    import dp_accounting
    from dp_accounting import pld, rdp

    config = load_config({**private_config(epsilon=2.0, accountant=accountant),
                          "train": {"epochs": 12, "batch_size": 64}})
    plan = plan_privacy(config, 5000)
    private = PrivateTraining(plan, seed=0)
    for _ in range(plan.steps):
        private.stepped()
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        plan.sample_rate, dp_accounting.GaussianDpEvent(plan.noise_multiplier)), plan.steps)
    reference = pld.PLDAccountant() if accountant == "prv" else rdp.RdpAccountant()
    expected = reference.compose(event).get_epsilon(plan.delta)
    assert private.epsilon() == pytest.approx(expected, rel=0.02)
    assert private.epsilon() <= 2.0 and expected <= 2.0 * 1.01  # calibrated to spend at most the target


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_adaptive_clipping_finds_the_target_quantile_of_the_norms():
    torch.manual_seed(0)
    model = MLP(4, [], 1, hidden_sizes=[16], dropout=0.0)
    adaptive = plan(noise=0.5, norm=0.01, batch=256.0)
    adaptive.adaptive = (0.9, 0.2, 256 / 20)
    assert adaptive.gradient_noise > adaptive.noise_multiplier  # the count's noise is paid for
    private = PrivateTraining(adaptive, seed=0)
    module, optimizer, train_loss = private.wrap(model, torch.optim.SGD(model.parameters(), lr=0.0),
                                                 build_loss("auto", "binary"))
    numeric, target = torch.randn(256, 4) * 3, torch.randint(0, 2, (256,))
    for _ in range(150):  # lr 0: the norms stay put while the bound moves from 0.01
        train_loss(module(numeric, torch.zeros(256, 0, dtype=torch.long)), target).backward()
        norms = private.clipper[0].per_sample_gradient_norms.clone()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        private.stepped()
    target_norm = float(torch.quantile(norms, 0.9))
    assert 0.75 * target_norm < private.bound < 1.3 * target_norm
    assert private.summary()["max_grad_norm"] == pytest.approx(private.bound, rel=1e-5)


def test_geometric_gaps_draw_an_exact_poisson_sample():
    from fitwell.privacy.dpsgd import poisson_rows

    generator = torch.Generator()
    draws = [poisson_rows(1000, 0.1, generator.manual_seed(i)) for i in range(3000)]
    sizes = torch.tensor([len(d) for d in draws], dtype=torch.float64)
    assert abs(float(sizes.mean()) - 100) < 1.0 and abs(float(sizes.var()) - 90) < 9  # Binomial(1000, 0.1)
    joined = torch.zeros(1000)
    for rows in draws:
        assert bool((rows[1:] > rows[:-1]).all()) and int(rows.max()) < 1000  # distinct, in range
        joined[rows] += 1
    assert float((joined / 3000 - 0.1).abs().max()) < 0.03  # every row joins with probability q


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["dp-sgd", "dp-ftrl"])
def test_a_private_run_killed_mid_epoch_resumes_bit_for_bit(tmp_path, write_config, mechanism):
    import os
    import sys

    import numpy as np
    import pandas as pd

    from tests.engine.test_resume import kill_at

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    frame["y"] = (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=2000) > 0).astype(int)
    frame.to_csv(tmp_path / "d.csv", index=False)
    config = write_config({
        "data": {"source": str(tmp_path / "d.csv"), "target": "y"}, "model": {"hidden_sizes": [32]},
        "preprocess": {"scale": "minmax_symmetric", "impute_numeric": "constant"},
        "train": {"epochs": 5, "batch_size": 16, "lr": 0.01, "progress": False, "checkpoint_every_steps": 9},
        "privacy": {"epsilon": 4.0, "mechanism": mechanism, "bounds": {f"x{i}": [-5, 5] for i in range(4)}}})
    fitwell_cli = [sys.executable, "-m", "fitwell.cli"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    whole = fitwell.train(config, {"track.name": "whole"}).path  # in this process; the killed one in others
    seconds = min(json.loads(line)["seconds"] for line in (whole / "history.jsonl").read_text().splitlines())
    killed = tmp_path / "runs" / "killed"
    assert kill_at([*fitwell_cli, "train", str(config), "track.name=killed"], killed, 3, 0.5 * seconds, env)
    fitwell.train(resume=killed)  # in this process: the kill needed one of its own
    a, b = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    spent = [json.loads((run / "metrics.json").read_text())["privacy"]["epsilon"] for run in (whole, killed)]
    assert spent[0] == spent[1] <= 4.0


def test_mlflow_records_what_a_private_run_spent(tmp_path, patients):
    import mlflow

    run = fitwell.train(private_config(), {"track.runs_dir": str(tmp_path), "track.loggers": ["mlflow"],
                                           "track.mlflow_log_model": False, "train.epochs": 2}, data=patients)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("fitwell").experiment_id])
    assert found.data.metrics["privacy_epsilon"] == pytest.approx(run.summary["privacy"]["epsilon"])
    assert found.data.metrics["privacy_noise_multiplier"] > 0 and "epsilon" in found.data.metrics  # per epoch


def test_a_table_with_privacy_overrides_trains_one_private_network(tmp_path):
    from fitwell.cli import run_cli

    make_mixed_frame(n=600).to_csv(tmp_path / "t.csv", index=False)
    code = run_cli(["train", str(tmp_path / "t.csv"), "--target", "label", "privacy.epsilon=3",
                    f"track.runs_dir={tmp_path / 'runs'}", "track.name=p", "train.epochs=2",
                    "track.report=false"])
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "p" / "metrics.json").read_text())
    assert "members" not in summary and summary["privacy"]["epsilon"] <= 3.0  # no preset's ensemble
    assert summary["privacy"]["preprocessing"]["releases"] > 0  # no public ranges: released with DP


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_training_stops_cleanly_when_the_planned_steps_are_spent():
    from fitwell.engine.loop import Trainer
    from tests.engine.conftest import synthetic

    torch.manual_seed(0)
    model = MLP(6, [], 1, hidden_sizes=[8], dropout=0.0)
    budget = plan(noise=1.0, norm=1.0, batch=64.0, rate=64 / 512, steps=10)  # 8 steps an epoch planned
    private = PrivateTraining(budget, seed=0)
    trainer = Trainer(model, build_loss("auto", "binary"), torch.optim.SGD(model.parameters(), lr=0.1),
                      task="binary", epochs=3, batch_size=64, callbacks=[private], privacy=private)
    state = trainer.fit(synthetic(512), synthetic(128, seed=1))
    assert state.step == 10 and private.steps == 10  # not one noised step past the budget
    assert state.stop_reason == "privacy budget spent after 10 steps" and state.epoch == 2
