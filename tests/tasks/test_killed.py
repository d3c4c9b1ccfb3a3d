"""SIGKILL a real reinforcement run and a real autoencoder run mid-training, resume each with
``fitwell train --resume``, and compare with the unbroken run: identical weights and scores."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file

from fitwell.cli import run_cli
from fitwell.serve import load_run


def kill_when(args, ready, cwd) -> bool:
    """Start ``python -m fitwell ...args``; SIGKILL it as soon as ``ready()``. True if it was killed
    before it finished (False: it finished first, and the test would prove nothing)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-m", "fitwell", *args], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None and not ready():
        time.sleep(0.005)
    if victim.poll() is not None:
        return False
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    return True


def test_a_killed_reinforcement_run_resumes_exactly(tmp_path):
    config = tmp_path / "cartpole.yaml"
    config.write_text(yaml.safe_dump({
        "task": "reinforcement", "env": {"id": "CartPole-v1", "num_envs": 2},
        "model": {"hidden_sizes": [32, 32]},
        "rl": {"steps": 4000, "eval_every": 1000, "eval_during": 3, "eval_episodes": 5,
               "checkpoint_every": 500, "gif_frames": 0,
               "hyperparameters": {"n_steps": 64, "batch_size": 64, "n_epochs": 2}},
        "train": {"threads": 1}, "track": {"runs_dir": str(tmp_path / "runs"), "report": False}}))
    killed = tmp_path / "runs" / "killed"
    assert kill_when(["train", str(config), "track.name=killed"],
                     lambda: any((killed / "checkpoints").glob("step-*.ckpt")), tmp_path)
    assert run_cli(["train", "--resume", str(killed)]) == 0
    assert run_cli(["train", str(config), "track.name=whole"]) == 0
    runs = [load_run(tmp_path / "runs" / name) for name in ("whole", "killed")]
    weights = [run.model.policy.state_dict() for run in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert runs[0].metrics == runs[1].metrics


def test_a_killed_autoencoder_run_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(rng.normal(size=(20_000, 6)), columns=[f"x{i}" for i in range(6)])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    config = tmp_path / "anomaly.yaml"
    config.write_text(yaml.safe_dump({
        "task": "anomaly", "data": {"source": str(tmp_path / "rows.csv")},
        "anomaly": {"method": "reconstruction"},
        "model": {"name": "denoising_autoencoder", "hidden_sizes": [16, 2]},
        "train": {"epochs": 6, "batch_size": 64, "lr": 3e-3, "progress": False, "threads": 1,
                  "checkpoint_every_steps": 50, "early_stopping": {"enabled": False}},
        "track": {"runs_dir": str(tmp_path / "runs"), "report": False}}))
    killed = tmp_path / "runs" / "killed"
    history = killed / "history.jsonl"
    assert kill_when(["train", str(config), "track.name=killed"],
                     lambda: history.exists() and len(history.read_text().splitlines()) >= 2, tmp_path)
    assert run_cli(["train", "--resume", str(killed)]) == 0
    assert run_cli(["train", str(config), "track.name=whole"]) == 0
    final = [load_file(tmp_path / "runs" / name / "model.safetensors") for name in ("whole", "killed")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    scores = [json.loads((tmp_path / "runs" / name / "metrics.json").read_text())["test"]
              for name in ("whole", "killed")]
    assert scores[0] == scores[1]
