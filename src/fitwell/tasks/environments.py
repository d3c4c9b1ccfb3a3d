"""Gymnasium environments for a reinforcement run: build them from ``env``, play evaluation
episodes, record a rollout as a GIF.

An evaluation never moves the training's random state: its env is seeded from (seed, the step it
evaluates at), and the global generators are restored after it, so a resumed run evaluates alike.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fitwell.config.tasks import EnvConfig
from fitwell.errors import ConfigError, did_you_mean

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share a seed with the training envs


def env_class(spec: str):
    """``module:Class`` -> the class, with an error that names ``env.id``."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"env.id: cannot import module {module_name!r} ({err}); is it on PYTHONPATH?"
                          " give module:Class of a gymnasium.Env subclass") from err
    found = getattr(module, class_name, None)
    if found is None:
        raise ConfigError(f"env.id: module {module_name!r} has no {class_name!r}")
    return found


def env_factory(config: EnvConfig, render_mode: str | None = None) -> Callable[[], Any]:
    """A function making one environment of ``config`` (SB3's ``make_vec_env`` calls it per copy)."""
    import gymnasium as gym

    if ":" not in config.id and config.id not in gym.registry:
        raise ConfigError(f"env.id: {config.id!r} is not a registered Gymnasium environment."
                          f"{did_you_mean(config.id, gym.registry)} For your own env give module:Class")

    def make():
        options = dict(config.kwargs)
        if render_mode is not None:
            options["render_mode"] = render_mode
        if ":" in config.id:
            env = env_class(config.id)(**options)
            if config.max_episode_steps is not None:
                env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
            return env
        return gym.make(config.id, max_episode_steps=config.max_episode_steps, **options)

    return make


def build_vec_env(config: EnvConfig, seed: int, copies: int | None = None):
    """``env.num_envs`` copies in a DummyVecEnv, each wrapped in SB3's Monitor (episode returns)."""
    from stable_baselines3.common.env_util import make_vec_env

    try:
        return make_vec_env(env_factory(config), n_envs=copies or config.num_envs, seed=seed)
    except TypeError as err:  # the env refused env.kwargs
        raise ConfigError(f"env.kwargs: {config.id} refused them: {err}") from err


@contextmanager
def kept_random_state():
    """Run a block without moving torch's, NumPy's or Python's global generators."""
    import torch

    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


def play_episodes(model, config: EnvConfig, seed: int, episodes: int, deterministic: bool = True
                  ) -> list[float]:
    """The return of each of ``episodes`` episodes of ``model``'s policy on a fresh env seeded
    from ``seed``."""
    from stable_baselines3.common.evaluation import evaluate_policy

    with kept_random_state():
        env = build_vec_env(config, seed + EVAL_SEED_OFFSET, copies=1)
        try:
            returns, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic,
                                         return_episode_rewards=True, warn=False)
        finally:
            env.close()
    return [float(r) for r in returns]


def record_gif(model, config: EnvConfig, seed: int, frames: int, path: Path) -> bool:
    """A GIF of the policy playing from a seeded reset; False when the env does not render to an
    array (nothing written)."""
    import gymnasium as gym
    from PIL import Image

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen: no display needed
    with kept_random_state():
        try:
            env = env_factory(config, render_mode="rgb_array")()
        except (TypeError, ValueError):
            return False
        try:
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
            images = []
            for _ in range(frames):
                try:
                    frame = env.render()
                except gym.error.DependencyNotInstalled:  # e.g. pygame for the classic-control envs
                    return False
                if not isinstance(frame, np.ndarray) or frame.ndim != 3:
                    return False
                images.append(Image.fromarray(frame.astype(np.uint8)).convert("P", palette=Image.ADAPTIVE))
                action, _ = model.predict(obs, deterministic=True)
                obs, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    obs, _ = env.reset()
        finally:
            env.close()
    if not images:
        return False
    from fitwell.files import write_with

    write_with(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                duration=40, loop=0))
    return True
