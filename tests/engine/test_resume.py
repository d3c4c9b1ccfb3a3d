"""Exact resume: SIGKILL a real training process at random moments, resume, compare bit for bit."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from fitwell.cli import run_cli


def kill_at(args, run_dir, epochs_logged, delay, env):
    """Start `fitwell ...args`; once its history shows ``epochs_logged`` epochs, wait ``delay``
    seconds (a fraction of an epoch, so mid-epoch) and SIGKILL it. Progress-based, so the kill
    lands mid-run however loaded the machine is.

    Returns True if it was killed before finishing training, False if it finished first."""
    history = run_dir / "history.jsonl"
    victim = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and victim.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= epochs_logged:
            break
        time.sleep(0.01)
    time.sleep(delay)
    if victim.poll() is not None:
        return False
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    return not (run_dir / "metrics.json").exists()  # it may have been exiting after finishing


@pytest.mark.slow
def test_killed_at_random_points_resumes_bit_for_bit(tmp_path, write_config, capfd):
    rng = np.random.default_rng(0)
    n = 1500
    x = rng.normal(size=(n, 6))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["y"] = (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    csv = tmp_path / "d.csv"
    frame.to_csv(csv, index=False)
    config = write_config({"data": {"source": str(csv), "target": "y"},
                           "model": {"hidden_sizes": [32, 32], "dropout": 0.2},
                           "train": {"epochs": 8, "batch_size": 8, "progress": False,
                                     "checkpoint_every_steps": 7, "schedule": {"name": "cosine"},
                                     "averaging": {"kind": "ema", "decay": 0.99},
                                     "early_stopping": {"patience": 3}}})
    assert run_cli(["train", str(config), "track.name=whole"]) == 0
    reference = load_file(tmp_path / "runs" / "whole" / "model.safetensors")
    reference_metrics = json.loads((tmp_path / "runs" / "whole" / "metrics.json").read_text())
    ref_history = [json.loads(line) for line in
                   (tmp_path / "runs" / "whole" / "history.jsonl").read_text().splitlines()]
    epochs = len(ref_history)
    assert epochs >= 4
    epoch_seconds = min(row["seconds"] for row in ref_history)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    fitwell = [sys.executable, "-m", "fitwell.cli"]
    chooser = random.Random(1)
    for case, kills in enumerate([2]):  # killed, resumed, killed again while resuming, resumed
        name = f"killed{case}"
        run_dir = tmp_path / "runs" / name
        first = chooser.randint(1, epochs - 3)
        assert kill_at([*fitwell, "train", str(config), f"track.name={name}"], run_dir, first,
                       chooser.uniform(0.0, 0.9) * epoch_seconds, env), "finished before the kill"
        killed = True
        for _ in range(kills - 1):  # killed again while resuming, a later epoch
            later = chooser.randint(first + 1, epochs - 1)
            killed = kill_at([*fitwell, "train", "--resume", str(run_dir)], run_dir, later,
                             chooser.uniform(0.0, 0.9) * epoch_seconds, env)
        if killed:  # the last resume in this process: the kills needed processes of their own
            capfd.readouterr()
            assert run_cli(["train", "--resume", str(run_dir)]) == 0
            assert "resuming" in capfd.readouterr().err
        got = load_file(run_dir / "model.safetensors")
        assert all(np.array_equal(got[k].numpy(), reference[k].numpy()) for k in reference), name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["test"] == reference_metrics["test"] and metrics["steps"] == reference_metrics["steps"]
        history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
        assert drop(history) == drop(ref_history)


def test_resume_from_a_mid_epoch_checkpoint_in_process(tmp_path, mixed_frame):
    """Stop inside epoch 3 right after a step checkpoint; the resumed run equals an unbroken one."""
    import fitwell
    from fitwell.engine.callbacks import Callback

    class StopMidEpoch(Callback):
        order = 200  # after the checkpoint writer

        def on_batch_end(self, trainer, state):
            if state.epoch == 2 and state.batch_in_epoch == 6:
                raise KeyboardInterrupt

    config = {"data": {"target": "label"}, "model": {"dropout": 0.3},
              "train": {"epochs": 5, "batch_size": 16, "checkpoint_every_steps": 3, "progress": False}}
    whole = fitwell.train(config, {"track.runs_dir": str(tmp_path / "a")}, data=mixed_frame)
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, {"track.runs_dir": str(tmp_path / "b"), "track.name": "r"}, data=mixed_frame,
                      callbacks=[StopMidEpoch()])
    from fitwell.engine.checkpoint import load_checkpoint

    ckpt, _ = load_checkpoint(tmp_path / "b" / "r" / "checkpoints")
    assert ckpt["trainer"]["epoch"] == 2 and 0 < ckpt["trainer"]["batch_in_epoch"] < 6  # mid-epoch
    resumed = fitwell.train(resume=tmp_path / "b" / "r", data=mixed_frame)
    a, b = load_file(whole.dir.model), load_file(resumed.dir.model)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert resumed.metrics == whole.metrics


def test_resume_past_a_corrupt_checkpoint_says_so(tmp_path, mixed_frame, capsys):
    import fitwell
    from fitwell.engine.callbacks import Callback

    class Stop(Callback):
        order = 200

        def on_epoch_end(self, trainer, state):
            if state.epoch == 3:
                raise KeyboardInterrupt

    csv = tmp_path / "d.csv"
    mixed_frame.to_csv(csv, index=False)
    config = {"data": {"source": str(csv), "target": "label"},
              "track": {"report": False, "runs_dir": str(tmp_path), "name": "r"},
              "train": {"epochs": 5, "progress": False, "checkpoint_max_overhead": 0}}  # one an epoch
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, callbacks=[Stop()])
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])  # a crash mid-write elsewhere, or a bad disk
    assert run_cli(["train", "--resume", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "last.ckpt is unreadable" in err and "from prev.ckpt (epoch 2" in err
