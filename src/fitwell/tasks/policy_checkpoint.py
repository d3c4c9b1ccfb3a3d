"""A reinforcement run's checkpoints: the SB3 algorithm (policy, optimizer, counters, last
observation), its replay buffer, the pickled environments and every random generator, so a resumed
run continues as if never stopped. Written at rollout boundaries, atomically; the newest two kept.

The environments are pickled with cloudpickle (SB3's own format for its saved objects); a
checkpoint is read only from a run directory this user wrote, never from a download.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np

from fitwell.config.schema import RunConfig
from fitwell.config.tasks import RLConfig
from fitwell.errors import UserError
from fitwell.files import write_bytes
from fitwell.tasks.environments import build_vec_env

ALGORITHMS = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN", "sac": "SAC", "td3": "TD3"}
KEEP_CHECKPOINTS = 2


def algorithm_class(name: str):
    """The Stable-Baselines3 class of ``rl.algorithm``."""
    import stable_baselines3

    return getattr(stable_baselines3, ALGORITHMS[name])


def write_checkpoint(folder: Path, model, history: list[dict]) -> Path:
    """The algorithm, its replay buffer, the environments and every generator, atomically."""
    import cloudpickle
    import torch

    buffer = io.BytesIO()
    model.save(buffer)
    payload: dict[str, Any] = {
        "model": buffer.getvalue(), "history": history, "steps": model.num_timesteps,
        "rng": (torch.get_rng_state(), np.random.get_state(), random.getstate()),
        "action_space": model.action_space.np_random.bit_generator.state}
    try:
        payload["env"] = cloudpickle.dumps(model.get_env())
    except Exception as err:  # an env holding a process or a window: resume resets it instead
        payload["env"], payload["env_note"] = None, f"{type(err).__name__}: {err}"
    if getattr(model, "replay_buffer", None) is not None:
        replay = io.BytesIO()
        model.save_replay_buffer(replay)
        payload["replay_buffer"] = replay.getvalue()
    path = folder / f"step-{model.num_timesteps:012d}.ckpt"
    write_bytes(path, cloudpickle.dumps(payload))
    for old in sorted(folder.glob("step-*.ckpt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(folder: Path, say) -> dict:
    """The newest checkpoint that reads; a damaged newer one is skipped with a warning."""
    import cloudpickle

    for path in sorted(folder.glob("step-*.ckpt"), reverse=True):
        try:
            return cloudpickle.loads(path.read_bytes())
        except Exception as err:
            say(f"[yellow]warning:[/] skipping damaged checkpoint {path.name} ({type(err).__name__})")
    raise UserError(f"cannot resume {folder.parent}: no readable checkpoint in {folder}")


def restore(payload: dict, config: RunConfig, say):
    """The algorithm as it was at the checkpoint, generators included."""
    import cloudpickle
    import torch

    rl = config.rl or RLConfig()
    env = cloudpickle.loads(payload["env"]) if payload.get("env") else build_vec_env(config.env, config.seed)
    model = algorithm_class(rl.algorithm).load(io.BytesIO(payload["model"]), env=env, device="cpu",
                                               force_reset=not payload.get("env"))
    if payload.get("replay_buffer") is not None:
        model.load_replay_buffer(io.BytesIO(payload["replay_buffer"]))
    if not payload.get("env"):
        say(f"[yellow]warning:[/] the env could not be saved ({payload.get('env_note')}); the episode in"
            " progress restarts, so this resume is not exact")
    torch.set_rng_state(payload["rng"][0])  # load() reseeded everything; the saved state wins
    np.random.set_state(payload["rng"][1])
    random.setstate(payload["rng"][2])
    model.action_space.np_random.bit_generator.state = payload["action_space"]
    return model
