"""Reinforcement learning on Stable-Baselines3: the same config, run directory, tracking, tuning,
report and exact resume as a supervised run.

``train_policy`` builds the algorithm from ``rl`` (its SB3 arguments in ``rl.hyperparameters``, RL
Zoo's ``lin_<rate>`` schedules), the policy network from ``model`` (when the model section is
changed from its defaults; else SB3's default network for the algorithm) and trains it on
``env``. Every ``rl.eval_every`` steps it plays ``rl.eval_during`` evaluation episodes
(``val_mean_return``: logged, reported to a tuning trial's pruner); every ``rl.checkpoint_every``
steps, at a rollout boundary, it writes a checkpoint that holds the algorithm (policy, optimizer,
counters, last observation), the replay buffer, the pickled environments and every random
generator -- so ``--resume`` continues as if never stopped. At the end it scores
``rl.eval_episodes`` episodes once (the run's test), saves ``policy.zip`` (``PPO.load`` reads it),
a rollout GIF where the env renders, ``report.html`` and the manifest.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fitwell.config.load import ConfigLike
from fitwell.config.schema import ModelConfig, RunConfig, TrainConfig
from fitwell.config.tasks import RLConfig
from fitwell.errors import ConfigError, DamagedRun, UserError
from fitwell.files import write_json, write_text
from fitwell.tasks.environments import build_vec_env, play_episodes, record_gif
from fitwell.tasks.policy_checkpoint import algorithm_class, read_checkpoint, restore, write_checkpoint

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "gelu": "GELU", "silu": "SiLU", "leaky_relu": "LeakyReLU",
               "sigmoid": "Sigmoid"}
SET_BY_FITWELL = {"self", "policy", "env", "seed", "device", "verbose", "_init_setup_model",
                  "tensorboard_log"}


class LinearSchedule:
    """RL Zoo's ``lin_<value>``: ``value`` falling linearly to 0 over the run (SB3 passes the
    remaining share of steps, 1 -> 0)."""

    def __init__(self, start: float):
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start

    def __repr__(self) -> str:
        return f"lin_{self.start:g}"


def hyperparameter(key: str, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[4:]))
        except ValueError:
            raise ConfigError(f"rl.hyperparameters.{key}: {value!r} is not lin_<number>, e.g. lin_0.001"
                              ) from None
    return value


def algorithm_arguments(config: RunConfig, cls) -> dict[str, Any]:
    """SB3 arguments from ``rl.hyperparameters``, the ``train.*`` keys that map
    (``train_arguments``) and ``model.hidden_sizes`` / ``model.activation``, where they differ
    from fitwell's defaults."""
    import torch

    rl = config.rl or RLConfig()
    known = set(inspect.signature(cls.__init__).parameters) - SET_BY_FITWELL
    arguments = {key: hyperparameter(key, value) for key, value in rl.hyperparameters.items()}
    for key in sorted(set(arguments) - known):
        raise ConfigError(f"rl.hyperparameters.{key}: not an argument of Stable-Baselines3's {cls.__name__};"
                          f" known: {', '.join(sorted(known))}")
    for argument, value in train_arguments(config, cls.__name__, known).items():
        if argument in arguments and argument != "policy_kwargs":
            raise ConfigError(f"train.* and rl.hyperparameters.{argument} both set {argument}; give it once")
        if argument == "policy_kwargs":
            value = {**value, **(arguments.get("policy_kwargs") or {})}
        arguments[argument] = value
    model, model_defaults = config.model, ModelConfig()
    if (model.hidden_sizes, model.activation) != (model_defaults.hidden_sizes, model_defaults.activation):
        if model.name != "mlp":
            raise ConfigError(f"model.name: a policy network is an MLP (model.hidden_sizes,"
                              f" model.activation); got {model.name!r}")
        policy = dict(arguments.get("policy_kwargs") or {})
        policy.setdefault("net_arch", list(model.hidden_sizes))
        policy.setdefault("activation_fn", getattr(torch.nn, ACTIVATIONS[model.activation]))
        arguments["policy_kwargs"] = policy
    return arguments


class CosineSchedule:
    """``train.schedule.name: cosine`` for SB3: from ``start`` down to ``end`` over the run."""

    def __init__(self, start: float, end: float):
        self.start, self.end = start, end

    def __call__(self, progress_remaining: float) -> float:
        import math

        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * (1 - progress_remaining)))


def train_arguments(config: RunConfig, algorithm: str, known: set[str]) -> dict[str, Any]:
    """The ``train.*`` keys changed from fitwell's defaults, as SB3 arguments: ``lr`` (through
    ``schedule``: linear or cosine over the run), ``batch_size``, ``optimizer``, ``weight_decay``."""
    import torch

    defaults, train = TrainConfig(), config.train
    out: dict[str, Any] = {}
    if train.lr == "auto" or train.batch_size == "auto":
        raise ConfigError("train.lr / train.batch_size: auto is measured for supervised runs; give numbers")
    if train.lr != defaults.lr or train.schedule.name != "none":
        schedules = {"none": lambda: train.lr, "linear": lambda: LinearSchedule(train.lr),
                     "cosine": lambda: CosineSchedule(train.lr, train.schedule.min_lr)}
        if train.schedule.name not in schedules:
            raise ConfigError(f"train.schedule.name: {train.schedule.name!r} has no reinforcement-learning"
                              " form; use linear or cosine (over the run's steps), or"
                              " rl.hyperparameters.learning_rate")
        out["learning_rate"] = schedules[train.schedule.name]()
    if train.batch_size != defaults.batch_size:
        if "batch_size" not in known:
            raise ConfigError(f"train.batch_size: {algorithm} has no batch size (it learns from whole"
                              " rollouts); drop it, or set its own rl.hyperparameters")
        out["batch_size"] = train.batch_size
    if train.optimizer != defaults.optimizer or train.weight_decay != defaults.weight_decay:
        classes = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
        if train.optimizer not in classes:
            raise ConfigError(f"train.optimizer: {train.optimizer!r} has no SB3 form; use"
                              f" {', '.join(classes)}")
        options: dict[str, Any] = {"weight_decay": train.weight_decay} if train.weight_decay else {}
        if train.optimizer == "sgd":
            options.update(momentum=train.momentum, nesterov=train.nesterov)
        out["policy_kwargs"] = {"optimizer_class": getattr(torch.optim, classes[train.optimizer]),
                                "optimizer_kwargs": options}
    return out


def policy_name(rl: RLConfig, space) -> str:
    import gymnasium as gym

    if rl.policy != "auto":
        return rl.policy
    if isinstance(space, gym.spaces.Dict):
        return "MultiInputPolicy"
    image = isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8
    return "CnnPolicy" if image else "MlpPolicy"


def build_algorithm(config: RunConfig, env):
    rl = config.rl or RLConfig()
    cls = algorithm_class(rl.algorithm)
    arguments = algorithm_arguments(config, cls)
    policy = policy_name(rl, env.observation_space)
    try:
        return cls(policy, env, seed=config.seed, device="cpu" if policy == "MlpPolicy" else "auto",
                   verbose=0, **arguments)
    except AssertionError as err:  # SB3's check of the action space (DQN: discrete; SAC/TD3: boxes)
        raise ConfigError(f"rl.algorithm: {rl.algorithm} cannot act in {config.env.id}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"rl.hyperparameters: {cls.__name__} refused them: {err}") from err


# --- the run -------------------------------------------------------------------------------------
def progress_callback(config: RunConfig, run_dir, history: list[dict], trackers, say, trial, started_at):
    """An SB3 callback: evaluate, checkpoint and stop at the time limit, at rollout boundaries."""
    from stable_baselines3.common.callbacks import BaseCallback

    rl = config.rl or RLConfig()

    saved = max((int(p.stem[5:]) for p in run_dir.checkpoints.glob("step-*.ckpt")), default=0)

    class Progress(BaseCallback):
        stopped_by_time = False
        last_saved = saved  # the newest checkpoint's step (a resumed run's, at first)

        def _on_step(self) -> bool:
            limit = config.train.max_time
            if limit is not None and time.monotonic() - started_at > limit:
                self.stopped_by_time = True
                return False
            return True

        def _on_rollout_start(self) -> None:
            steps = self.model.num_timesteps
            last = history[-1]["step"] if history else 0
            if steps and steps // rl.eval_every > last // rl.eval_every:
                self.evaluate(steps)
            if steps and steps // rl.checkpoint_every > self.last_saved // rl.checkpoint_every:
                write_checkpoint(run_dir.checkpoints, self.model, history)
                self.last_saved = steps

        def evaluate(self, steps: int) -> None:
            returns = play_episodes(self.model, config.env, config.seed + 1 + steps, rl.eval_during,
                                    rl.deterministic_eval)
            episodes = [float(e["r"]) for e in self.model.ep_info_buffer]
            row = {"step": steps, "val_mean_return": float(np.mean(returns)),
                   "val_std_return": float(np.std(returns)),
                   "train_episode_return": float(np.mean(episodes)) if episodes else None,
                   "seconds": round(time.monotonic() - started_at, 3)}
            history.append(row)
            write_text(run_dir.history, "".join(f"{json.dumps(r)}\n" for r in history))
            for tracker in trackers:
                tracker.log(row, steps)
            say(f"step {steps}: mean return {row['val_mean_return']:.2f} +- {row['val_std_return']:.2f}"
                f" ({rl.eval_during} episodes)")
            if trial is not None:
                import optuna

                trial.report(row["val_mean_return"], len(history))  # pruner warm-up counts evaluations
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {steps} (val_mean_return"
                                             f" {row['val_mean_return']:.4g})")

    return Progress()


def plan_run(config: ConfigLike | None, overrides, resume, stem: str):
    from fitwell.run import load_run_config, resumed_config
    from fitwell.track.run_dir import RunDir, default_run_name

    if resume is not None:
        return resumed_config(resume, overrides), RunDir(resume)
    resolved = load_run_config(config, overrides)
    track = resolved.track
    return resolved, RunDir.plan(track.runs_dir, track.name or default_run_name(stem), track.overwrite)


def train_policy(config: ConfigLike | None = None,
                 overrides: Sequence[str] | Mapping[str, Any] | None = None, *,
                 resume: str | Path | None = None, callbacks: Sequence[Any] = (), console=None,
                 started_at: float | None = None, trial=None) -> PolicyRun:
    """Train (or resume) a reinforcement run and return it, scored on ``rl.eval_episodes`` episodes.

    Example:
        >>> run = train_policy({"task": "reinforcement", "env": {"id": "CartPole-v1"},
        ...                     "rl": {"steps": 20000}})  # doctest: +SKIP
        >>> run.metrics["mean_return"], run.rollout(episodes=5)  # doctest: +SKIP
    """
    from fitwell.engine.build import seed_everything
    from fitwell.engine.threads import thread_limit
    from fitwell.run import RunStart, config_stem, console_say, guard

    say = console_say(console)
    started_at = time.monotonic() if started_at is None else started_at
    resolved, run_dir = plan_run(config, overrides, resume, config_stem(config, "rl"))
    if resolved.train.devices * resolved.train.num_nodes > 1:
        raise ConfigError("train.devices: a reinforcement run trains on one process (SB3); drop it")
    if resolved.tune is not None and trial is None and resume is None and config is not None:
        say("[yellow]note:[/] the tune section is used by fitwell tune, not fitwell train")
    seed_everything(resolved.seed)
    threads = resolved.train.threads if isinstance(resolved.train.threads, int) else 1
    start = RunStart(resolved, None, run_dir, say, console, started_at=started_at,
                     resumed=resume is not None)
    with thread_limit(threads):
        if resume is not None:
            payload = read_checkpoint(run_dir.checkpoints, say)
            model, history = restore(payload, resolved, say), list(payload["history"])
            say(f"resuming [bold]{run_dir.path}[/] at step {model.num_timesteps}")
        else:
            env = build_vec_env(resolved.env, resolved.seed)
            model, history = build_algorithm(resolved, env), []
        with guard(start):
            return learn(start, model, history, callbacks, trial)


def learn(start, model, history: list[dict], callbacks, trial) -> PolicyRun:
    from types import SimpleNamespace

    from fitwell.config.load import dump_config
    from fitwell.track.loggers import build_trackers
    from fitwell.track.run_dir import environment

    config, run_dir, say = start.config, start.run_dir, start.say
    rl = config.rl or RLConfig()
    if not start.resumed:
        run_dir.make()
        run_dir.set_status("running")
        write_text(run_dir.config, dump_config(config))
        write_json(run_dir.env, environment(config.seed))
        say(f"task [bold]reinforcement[/]: {rl.algorithm.upper()} on {config.env.id}, {rl.steps} steps,"
            f" {config.env.num_envs} env(s)")
    else:
        write_text(run_dir.history, "".join(f"{json.dumps(r)}\n" for r in history))
    trackers = build_trackers(config.track, run_dir.path)
    for tracker in trackers:  # the trackers' own start hook, with what a supervised loop gives it
        tracker.on_fit_start(SimpleNamespace(config=config.model_dump(mode="json")),
                             SimpleNamespace(history=history))
    progress = progress_callback(config, run_dir, history, trackers, say, trial, start.started_at)
    start.training_started = True
    before = model.num_timesteps
    clock = time.monotonic()
    model.learn(total_timesteps=max(0, rl.steps - before), callback=[progress, *callbacks],
                reset_num_timesteps=not start.resumed)
    seconds = time.monotonic() - clock
    if not history or history[-1]["step"] != model.num_timesteps:
        progress.evaluate(model.num_timesteps)  # the validation score at the end (a trial's value)
    test, returns = {}, []
    if trial is None:  # scored once, on episodes of seeds no evaluation during training (or trial) used
        returns = play_episodes(model, config.env, config.seed, rl.eval_episodes, rl.deterministic_eval)
        test = {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                "min_return": float(np.min(returns)), "max_return": float(np.max(returns)),
                "episodes": len(returns)}
    last = history[-1] if history else {}
    summary = {"task": "reinforcement", "algorithm": rl.algorithm, "env": config.env.id, "test": test,
               "validation": {k: v for k, v in last.items() if k.startswith("val_")},
               "steps": int(model.num_timesteps),
               "steps_per_s": round((model.num_timesteps - before) / max(seconds, 1e-9), 1),
               "duration_s": round(time.monotonic() - start.started_at, 3),
               "stop_reason": "train.max_time" if progress.stopped_by_time else None,
               "returns": returns}
    finish_policy_run(start, model, summary, trackers)
    if test:
        say(f"mean return {test['mean_return']:.2f} +- {test['std_return']:.2f} over {len(returns)} episodes")
    return PolicyRun(run_dir.path, config, model, summary)


def finish_policy_run(start, model, summary: dict, trackers) -> None:
    from fitwell.files import write_with
    from fitwell.run import finish_task_run
    from fitwell.tasks.rl_report import render_policy_run

    config, run_dir = start.config, start.run_dir
    rl = config.rl or RLConfig()
    write_with(run_dir.path / "policy.zip", lambda tmp: model.save(tmp))
    if rl.gif_frames:
        summary["rollout_gif"] = record_gif(model, config.env, config.seed, rl.gif_frames,
                                            run_dir.path / "rollout.gif")
    finish_task_run(start, summary, render_policy_run, trackers)


@dataclass
class PolicyRun:
    """A finished reinforcement run: its policy (an SB3 algorithm), config and summary."""

    path: Path
    config: RunConfig
    model: Any
    summary: dict
    task: str = "reinforcement"

    @property
    def metrics(self) -> dict:
        return self.summary.get("test", {})

    def rollout(self, episodes: int = 10, deterministic: bool = True, seed: int | None = None) -> list[float]:
        """Play ``episodes`` episodes; their returns."""
        seed = self.config.seed + 7 if seed is None else seed
        return play_episodes(self.model, self.config.env, seed, episodes, deterministic)

    def evaluate(self, data) -> dict:
        raise UserError(f"{self.path} is a reinforcement run: it is scored on episodes, not labelled rows;"
                        f" play it with fitwell predict {self.path} --episodes N")

    def predict(self, observations, deterministic: bool = True):
        """The policy's actions for a table of observations (a row each, the flattened observation)."""
        import pandas as pd

        frame = observations if isinstance(observations, pd.DataFrame) else pd.read_csv(observations)
        space = self.model.observation_space
        size = int(np.prod(space.shape))
        if frame.shape[1] != size:
            raise UserError(f"observations: {frame.shape[1]} columns, but {self.config.env.id}'s observation"
                            f" has {size} numbers (shape {space.shape}); give one column per number")
        values = frame.to_numpy(dtype=space.dtype).reshape((-1, *space.shape))
        actions, _ = self.model.predict(values, deterministic=deterministic)
        actions = np.asarray(actions).reshape(len(frame), -1)
        names = ["action"] if actions.shape[1] == 1 else [f"action_{i}" for i in range(actions.shape[1])]
        return pd.DataFrame(actions, columns=names)


def load_policy(path: str | Path) -> PolicyRun:
    """A finished reinforcement run directory, its artifacts checked against the manifest."""
    from fitwell.run import load_run_config
    from fitwell.track.run_dir import RunDir

    run_dir = RunDir(path)
    policy = run_dir.path / "policy.zip"
    run_dir.require(run_dir.config, policy, run_dir.metrics)
    run_dir.verify(policy, run_dir.config)
    config = load_run_config(run_dir.config)
    if config.data.task != "reinforcement":
        raise DamagedRun(f"{run_dir.path} is a {config.data.task} run, not a reinforcement run")
    model = algorithm_class((config.rl or RLConfig()).algorithm).load(policy, device="cpu")
    return PolicyRun(run_dir.path, config, model, run_dir.read_json(run_dir.metrics))
