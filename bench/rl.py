"""Reinforcement learning: fitwell's run against the same algorithm run directly with
Stable-Baselines3 (same process, same hyperparameters, seed and number of evaluations and
checkpoints), and the returns issue 18 asks for.

Run: python bench/rl.py [--cases cartpole pendulum] [--threads 1]

- cartpole: PPO on CartPole-v1, 100k steps, RL Zoo's settings (examples/cartpole_ppo.yaml);
  target: mean return >= 475 over 100 evaluation episodes.
- pendulum: SAC on Pendulum-v1, 20k steps, RL Zoo's settings (learning rate 1e-3); target: mean
  return >= -200 over 100 evaluation episodes.

The direct SB3 run does what fitwell does during training with SB3's own tools: an EvalCallback
every ``eval_every`` steps (the same episode count) and a CheckpointCallback every
``checkpoint_every`` steps (with the replay buffer). The ratio is fitwell's training seconds
(model.learn with its evaluations and checkpoints) over SB3's; both exclude the final evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fitwell.tasks.policy_checkpoint import algorithm_class  # noqa: E402
from fitwell.tasks.reinforcement import algorithm_arguments, train_policy  # noqa: E402

CASES = {
    "cartpole": {"config": yaml.safe_load((ROOT / "examples" / "cartpole_ppo.yaml").read_text()),
                 "target": 475.0},
    "pendulum": {"config": {"task": "reinforcement", "env": {"id": "Pendulum-v1", "num_envs": 1},
                            "rl": {"algorithm": "sac", "steps": 20_000, "eval_every": 5_000,
                                   "eval_episodes": 100, "checkpoint_every": 5_000,
                                   "hyperparameters": {"learning_rate": 1e-3}}},
                 "target": -200.0},
}


def direct_sb3(config: dict, folder: Path) -> float:
    """Seconds of SB3's own learn() with its EvalCallback and CheckpointCallback."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    from fitwell.config.load import load_config

    resolved = load_config(config)
    rl, env = resolved.rl, resolved.env
    vec = make_vec_env(env.id, n_envs=env.num_envs, seed=resolved.seed)
    cls = algorithm_class(rl.algorithm)
    model = cls("MlpPolicy", vec, seed=resolved.seed, device="cpu", verbose=0,
                **algorithm_arguments(resolved, cls))
    every = max(1, rl.eval_every // env.num_envs)  # SB3 counts callback calls, one per vec step
    evaluation = make_vec_env(env.id, n_envs=1, seed=resolved.seed + 1)
    callbacks = [EvalCallback(evaluation, n_eval_episodes=rl.eval_during, eval_freq=every, verbose=0),
                 CheckpointCallback(max(1, rl.checkpoint_every // env.num_envs), str(folder / "sb3"),
                                    save_replay_buffer=True)]
    started = time.perf_counter()
    model.learn(rl.steps, callback=callbacks)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| case | steps | fitwell mean return (100 episodes) | target | fitwell train s | SB3 train s |"
          " fitwell / SB3 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.cases:
        case = CASES[name]
        ratios, returns, ours, theirs = [], [], [], []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                config = {**case["config"], "track": {"runs_dir": folder, "name": f"{name}-{repeat}"},
                          "train": {"threads": args.threads}}
                run = train_policy(config)
                fitwell_s = run.summary["steps"] / run.summary["steps_per_s"]
                sb3_s = direct_sb3(config, Path(folder))
            ours.append(fitwell_s)
            theirs.append(sb3_s)
            ratios.append(fitwell_s / sb3_s)
            returns.append(run.metrics["mean_return"])
        print(f"| {name} | {run.summary['steps']} | {statistics.median(returns):.1f}"
              f" (+- {run.metrics['std_return']:.1f}) | {case['target']:g} | {statistics.median(ours):.1f} |"
              f" {statistics.median(theirs):.1f} | {statistics.median(ratios):.3f} |", flush=True)


if __name__ == "__main__":
    main()
