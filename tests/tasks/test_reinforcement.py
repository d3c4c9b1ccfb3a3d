"""Reinforcement runs on Stable-Baselines3 through fitwell's config, run directory and resume."""

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

import fitwell
from fitwell.cli import run_cli
from fitwell.errors import ConfigError
from fitwell.serve import load_run
from fitwell.tune.study import tune

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_learns_cartpole_and_its_run_holds_what_a_run_holds(tmp_path, capsys):
    code = run_cli(["train", str(ROOT / "examples" / "cartpole_ppo.yaml"), f"track.runs_dir={tmp_path}",
                    "track.name=cartpole", "rl.steps=8000", "rl.eval_every=4000", "rl.eval_episodes=10",
                    "rl.gif_frames=20"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "final evaluation" in out and "mean_return" in out
    path = tmp_path / "cartpole"
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["test"]["mean_return"] > 100  # a random policy averages about 22
    for name in ("config.yaml", "env.json", "history.jsonl", "metrics.csv", "policy.zip", "rollout.gif",
                 "report.html", "manifest.json"):
        assert (path / name).is_file(), name
    assert json.loads((path / "status.json").read_text())["status"] == "completed"
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == sorted(row["step"] for row in history) and len(history) >= 2
    page = (path / "report.html").read_text()
    assert "data:image/gif;base64" in page and "mean_return" in page and "<svg" in page
    assert run_cli(["predict", str(path), "--episodes", "3"]) == 0
    returns = pd.read_csv(io.StringIO(capsys.readouterr().out))["return"]
    assert len(returns) == 3 and returns.mean() > 50
    capsys.readouterr()
    assert run_cli(["evaluate", str(path), "--data", str(path / "config.yaml")]) == 2  # no rows to score
    assert "--episodes N" in "".join(capsys.readouterr())
    assert run_cli(["export", str(path)]) == 2
    assert "policy.zip" in "".join(capsys.readouterr())
    assert run_cli(["serve", str(path)]) == 2  # refused before it binds a port
    assert "fitwell predict" in "".join(capsys.readouterr())
    loaded = load_run(path)  # what fitwell predict and fitwell serve load
    actions = loaded.predict(pd.DataFrame(np.zeros((4, 4))))
    assert list(actions.columns) == ["action"] and set(actions["action"]) <= {0, 1}


class StopAt(BaseCallback):
    """Stands for a crash: raises once training passes ``steps``."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def _on_step(self):
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True


@pytest.mark.parametrize("algorithm, hyperparameters", [  # PPO: SIGKILLed in test_killed.py
    ("dqn", {"learning_starts": 200, "buffer_size": 5000, "train_freq": 4, "target_update_interval": 100}),
])
def test_a_run_stopped_mid_way_resumes_exactly(tmp_path, algorithm, hyperparameters):
    config = {"task": "reinforcement", "env": {"id": "CartPole-v1", "num_envs": 2},
              "model": {"hidden_sizes": [32, 32]},
              "rl": {"algorithm": algorithm, "steps": 2400, "eval_every": 500, "eval_during": 3,
                     "eval_episodes": 5, "checkpoint_every": 800, "gif_frames": 0,
                     "hyperparameters": hyperparameters},
              "track": {"runs_dir": str(tmp_path)}}
    whole = fitwell.train(config, {"track.name": "whole"})
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, {"track.name": "broken"}, callbacks=[StopAt(1900)])
    broken = tmp_path / "broken"
    assert json.loads((broken / "status.json").read_text())["status"] == "interrupted"
    resumed = fitwell.train(None, resume=broken)
    before, after = whole.model.policy.state_dict(), resumed.model.policy.state_dict()
    assert all(bool((before[k] == after[k]).all()) for k in before)  # the same weights, bit for bit
    assert resumed.metrics == whole.metrics
    def evaluations(path):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (path / "history.jsonl").read_text().splitlines()]

    assert evaluations(broken) == evaluations(whole.path)


def test_a_custom_environment_by_module_and_class(tmp_path, monkeypatch):
    (tmp_path / "sign_game.py").write_text(textwrap.dedent('''
        import gymnasium as gym
        import numpy as np

        class SignGame(gym.Env):
            """Say the sign of the number shown: +1 a step when right; 10 steps an episode."""
            def __init__(self, length=10):
                self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
                self.action_space = gym.spaces.Discrete(2)
                self.length = length

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.t, self.x = 0, self.np_random.uniform(-1, 1, 1).astype(np.float32)
                return self.x, {}

            def step(self, action):
                reward = float(int(action) == int(self.x[0] > 0))
                self.t += 1
                self.x = self.np_random.uniform(-1, 1, 1).astype(np.float32)
                return self.x, reward, False, self.t >= self.length, {}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"task": "reinforcement", "env": {"id": "sign_game:SignGame", "kwargs": {"length": 10}},
              "rl": {"steps": 3000, "eval_every": 1000, "eval_during": 5, "eval_episodes": 20,
                     "hyperparameters": {"n_steps": 256, "batch_size": 64, "learning_rate": 3e-3}},
              "track": {"runs_dir": str(tmp_path / "runs"), "name": "sign"}}
    run = fitwell.train(config)
    assert run.metrics["mean_return"] >= 9.0  # random guessing scores 5 of 10
    assert not (run.path / "rollout.gif").exists()  # the env does not render: no GIF, and the page says so
    assert "does not render" in (run.path / "report.html").read_text()


@pytest.mark.parametrize("change, key", [
    ({"env": {"id": "CartPoel-v1"}}, r"env\.id: 'CartPoel-v1'.*CartPole-v1"),
    ({"rl": {"hyperparameters": {"n_step": 64}}}, r"rl\.hyperparameters\.n_step: .*n_steps"),
    ({"rl": {"algorithm": "dqn"}, "env": {"id": "Pendulum-v1"}}, r"rl\.algorithm: dqn cannot act in"),
    ({"rl": {"hyperparameters": {"learning_rate": "lin_fast"}}}, r"rl\.hyperparameters\.learning_rate"),
    ({"env": None}, r"needs an env section"),
    ({"data": {"source": "table.csv"}}, r"drop data\.source"),
    ({"data": {"task": "binary"}}, r"task: 'reinforcement' and data\.task: 'binary' disagree"),
    ({"rl": {"algorithm": "a2c"}, "train": {"batch_size": 64}}, r"train\.batch_size: A2C has no batch size"),
    ({"train": {"schedule": {"name": "step"}}}, r"train\.schedule\.name: 'step' has no"),
])
def test_a_bad_reinforcement_config_names_the_key(tmp_path, change, key):
    config = {"task": "reinforcement", "env": {"id": "CartPole-v1"}, "rl": {"steps": 100},
              "track": {"runs_dir": str(tmp_path)}}
    config.update(change)
    if config["env"] is None:
        del config["env"]
    with pytest.raises(ConfigError, match=key):
        fitwell.train(config)
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_tune_searches_a_reinforcement_run_and_scores_the_best_once(tmp_path):
    config = {"task": "reinforcement", "env": {"id": "CartPole-v1", "num_envs": 4},
              "rl": {"steps": 2048, "eval_every": 512, "eval_during": 3, "eval_episodes": 5, "gif_frames": 0,
                     "hyperparameters": {"n_steps": 64, "batch_size": 64, "n_epochs": 4}},
              "tune": {"trials": 3, "space": {"rl.hyperparameters.learning_rate": {
                  "type": "float", "low": 1e-4, "high": 3e-3, "log": True}}},
              "track": {"runs_dir": str(tmp_path)}}
    summary = tune(config, study="rl-study")
    assert summary["metric"] == ["val_mean_return"] and summary["directions"] == ["maximize"]
    assert set(summary["best_params"]) == {"rl.hyperparameters.learning_rate"}
    assert summary["test"]["episodes"] == 5 and summary["trials"] == 3
    trial = json.loads((tmp_path / "rl-study" / "trial-0" / "metrics.json").read_text())
    assert trial["test"] == {} and "val_mean_return" in trial["validation"]  # trials never play test episodes
    import optuna

    storage = f"sqlite:///{tmp_path / 'rl-study' / 'study.db'}"
    study = optuna.load_study(study_name="rl-study", storage=storage)
    assert all(len(t.intermediate_values) == 4 for t in study.trials)  # each evaluation went to the pruner


def test_the_train_keys_that_map_shape_the_algorithm(tmp_path):
    config = {"task": "reinforcement", "env": {"id": "CartPole-v1"},
              "rl": {"steps": 512, "eval_every": 256, "eval_during": 2, "eval_episodes": 2, "gif_frames": 0,
                     "hyperparameters": {"n_steps": 128}},
              "train": {"optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4, "batch_size": 32,
                        "schedule": {"name": "linear"}},
              "model": {"hidden_sizes": [16], "activation": "tanh"},
              "track": {"runs_dir": str(tmp_path)}}
    model = fitwell.train(config).model
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["weight_decay"] == 1e-4
    assert model.batch_size == 32 and model.lr_schedule(1.0) == pytest.approx(0.02)
    assert optimizer.param_groups[0]["lr"] < 0.02 * 0.5  # fell linearly over the run
    layers = model.policy.mlp_extractor.policy_net
    assert [m.out_features for m in layers if hasattr(m, "out_features")] == [16]
    assert any(isinstance(m, torch.nn.Tanh) for m in layers)
