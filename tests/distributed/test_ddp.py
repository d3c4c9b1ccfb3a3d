"""Data-parallel training on real processes (gloo on the CPU): fitwell starting them, torchrun
starting them, a SIGKILL and a resume on 2 processes and on 1, and errors from inside them."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import make_classification

import fitwell
import fitwell.pipeline as fitwell_pipeline
from fitwell.engine.checkpoint import load_checkpoint
from fitwell.engine.distributed import World
from fitwell.errors import ConfigError, DataError, UserError

PLAIN = {"hidden_sizes": [32, 16], "dropout": 0.0, "batch_norm": False}  # the same sum on 1 or 2 processes


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fitwell", *args], capture_output=True, text=True, **kwargs)


def weights_gap(a, b) -> float:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def test_two_processes_train_the_weights_of_one(write_config, tmp_path):
    """fitwell starts 2 processes (train.devices=2): they end with the weights of a single process
    with the same global batch and seed; one run directory, no scratch left. (`fitwell train`
    starting them: the SIGKILL test; torchrun: test_two_machines_simulated_on_localhost and the
    SLURM test.)"""
    # no callback reads each batch's loss (nan_guard, progress off): each rank sums its own, added
    # up at the epoch's end; with them it rides in the gradients' all-reduce (the other tests here)
    config = write_config({"data": {"source": "sklearn:breast_cancer"}, "model": PLAIN, "seed": 3,
                           "train": {"epochs": 4, "batch_size": 64, "lr": 0.003, "nan_guard": False,
                                     "progress": False}, "track": {"report": False}})
    one = fitwell.train(config, {"track.name": "one"})
    fitwell.train(config, {"train.devices": 2, "track.name": "two"})  # this process launches the 2
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["one", "two"]
    for name in ("two",):
        assert weights_gap(one.path, runs / name) < 1e-6
        run = fitwell.load_run(runs / name)
        assert [row["train_loss"] for row in run.history] == pytest.approx(
            [row["train_loss"] for row in one.history], abs=1e-6)
        assert run.metrics["roc_auc"] == pytest.approx(one.metrics["roc_auc"], abs=1e-6)
        assert (runs / name / "status.json").read_text().count("completed") == 1


def start_killable(args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-m", "fitwell", *args], cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def kill_after_two_checkpoints(args: list[str], cwd, run_dir) -> dict:
    """Start ``fitwell *args``, SIGKILL its process group once ``run_dir`` holds two resume
    checkpoints; the newest readable checkpoint (killed between renames: prev.ckpt serves)."""
    job = start_killable(args, cwd)
    checkpoints = run_dir / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints / "prev.ckpt").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    return load_checkpoint(checkpoints)[0]


@pytest.mark.slow
def test_sigkill_then_resume_on_two_and_on_one(write_config, tmp_path, table):
    """A 2-process run killed mid-epoch resumes on 2 processes and on 1, and both end with the
    weights of the unbroken run (up to a reduction order)."""
    train = {"epochs": 12, "batch_size": 32, "lr": 0.002, "checkpoint_every_steps": 5,
             "checkpoint_max_overhead": 0, "early_stopping": {"enabled": False}}
    config = write_config({"data": {"source": str(table), "target": "y"}, "model": PLAIN, "seed": 1,
                           "train": train, "track": {"report": False}})
    unbroken = fitwell.train(config, {"track.name": "unbroken"})
    runs = tmp_path / "runs"
    saved = kill_after_two_checkpoints(["train", str(config), "train.devices=2", "track.name=killed", "-q"],
                                       tmp_path, runs / "killed")["trainer"]
    assert saved["epoch"] < train["epochs"], "the run finished before it was killed"
    shutil.copytree(runs / "killed", runs / "killed-on-one")
    for name, more in (("killed", []), ("killed-on-one", ["train.devices=1"])):
        fitwell.train(resume=runs / name, overrides=more)  # in this process; its launcher for 2
        assert weights_gap(unbroken.path, runs / name) < 1e-5
    assert fitwell.load_run(runs / "killed").history[-1]["epoch"] == train["epochs"]


def test_a_user_error_inside_the_processes_comes_back_once(write_config, tmp_path):
    config = write_config({"data": {"source": "sklearn:breast_cancer", "target": "nope"}, "model": PLAIN,
                           "train": {"epochs": 1, "devices": 2}})
    with pytest.raises(DataError, match="nope") as raised:  # raised as DataError inside a process
        fitwell.train(config, {"track.name": "bad"})
    assert str(raised.value).count("is not in the data") == 1  # once, not once a process
    assert not (tmp_path / "runs" / "bad").exists()


def test_the_batch_loss_rides_in_the_first_bucket_or_beside_a_large_one():
    """DDP's comm hook: a small first bucket carries the batch's loss appended to it; a large one is
    not copied for it, the loss takes an all-reduce of its own (a 1-process gloo group here)."""
    import torch.distributed as dist

    from fitwell.engine.distributed import PACK_LIMIT, packed_allreduce

    class Bucket:
        def __init__(self, grads, index):
            self.grads, self.position = grads, index

        def buffer(self):
            return self.grads

        def index(self):
            return self.position

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        for size in (10, PACK_LIMIT + 1):
            world = World(0, 1, 0)
            world.outgoing = torch.tensor([2.5])
            grads = packed_allreduce(world, Bucket(torch.full((size,), 3.0), 0)).wait()
            assert grads.shape == (size,) and bool((grads == 3.0).all())
            assert float(world.batch_sum(torch.tensor(0.0), 1)) == 2.5 and world.pending is None
    finally:
        dist.destroy_process_group()


def test_a_processs_user_error_is_raised_as_its_own_kind(tmp_path):
    from fitwell.errors import DataError
    from fitwell.launch import raise_failure

    failure = tmp_path / "failure"
    (tmp_path / "failure.1").write_text('{"kind": "DataError", "message": "data.target: no column nope"}')
    with pytest.raises(DataError, match="nope"):
        raise_failure(str(failure), 2, RuntimeError("a child failed"))
    with pytest.raises(RuntimeError, match="a child failed"):  # a bug stays what it was
        raise_failure(str(tmp_path / "other"), 2, RuntimeError("a child failed"))


def test_what_cannot_run_on_several_processes_is_refused(write_config, tmp_path, mixed_frame):
    config = write_config({"data": {"source": "sklearn:breast_cancer"}, "train": {"epochs": 1}})
    with pytest.raises(ConfigError, match="Parquet"):
        fitwell.train(config, {"train.devices": 2}, data=mixed_frame)
    with pytest.raises(ConfigError, match="torchrun"):
        fitwell.train(config, {"train.num_nodes": 2})
    with pytest.raises(ConfigError, match="train.devices"):
        fitwell.train(config, {"train.devices": 2, "privacy.epsilon": 3})
    with pytest.raises(ConfigError, match="train.devices"):  # a tuning trial or a fold: one process
        fitwell_pipeline.train(config, {"train.devices": 2}, merge_val=True)
    with pytest.raises(UserError, match="train.lr cannot change"):
        fitwell.train(resume=tmp_path, overrides=["train.lr=0.1"])


@pytest.mark.parametrize("rows,size,world", [(100, 32, 2), (103, 32, 3), (70, 64, 4), (64, 64, 2)])
def test_each_rank_takes_its_share_of_every_global_batch(rows, size, world):
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))
    shares = [World(rank, world, 0).epoch_rows(order, rows, size) for rank in range(world)]
    stop = World(0, world, 0).stop(rows, size)
    batches = list(zip(*(bounds for _, bounds in shares), strict=True))
    assert len(batches) == -(-stop // size)
    for index, per_rank in enumerate(batches):
        expected = order[index * size: min((index + 1) * size, stop)]
        got = torch.cat([shares[r][0][start:end] for r, (start, end, _) in enumerate(per_rank)])
        assert torch.equal(got, expected)  # the rows of the global batch, each once, in order
        assert sum((end - start) / total for start, end, total in per_rank) == pytest.approx(1.0)
        assert min(end - start for start, end, _ in per_rank) >= 2 or len(expected) < 2 * world
    assert rows - stop < 2 * world


def test_a_resumed_run_may_change_only_its_process_count():
    from fitwell.run import resume_overrides

    assert resume_overrides(["train.devices=1"]) == {"train.devices": 1}
    assert resume_overrides({"train.num_nodes": "2"}) == {"train.num_nodes": 2}
    with pytest.raises(UserError, match="whole number"):
        resume_overrides(["train.devices=two"])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_a_slurm_job_script_trains_on_its_tasks(write_config, tmp_path):
    """``fitwell slurm`` writes the script; its srun line, run as SLURM would run it (2 tasks with
    SLURM's variables), trains one run named after the job."""
    config = write_config({"data": {"source": "sklearn:breast_cancer"}, "model": PLAIN, "seed": 3,
                           "train": {"epochs": 2, "batch_size": 64}, "track": {"report": False}})
    script = cli("slurm", str(config), "train.lr=0.003", "--nodes", "1", "--tasks-per-node", "2",
                 cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    assert "#SBATCH --nodes=1" in script.stdout and "#SBATCH --ntasks-per-node=2" in script.stdout
    srun = next(line for line in script.stdout.splitlines() if line.startswith("srun "))
    command = shlex.split(srun.removeprefix("srun ").replace("$SLURM_JOB_ID", "4242"))
    port = str(free_port())
    tasks = []
    for rank in range(2):
        env = {**os.environ, "SLURM_NTASKS": "2", "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "2",
               "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
               "SLURM_NODELIST": "localhost", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "fitwell-run",
               "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        tasks.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [task.communicate(timeout=300) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    runs = [p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert runs == ["run-4242"]
    assert fitwell.load_run(tmp_path / "runs" / "run-4242").summary["epochs"] == 2


def test_two_machines_simulated_on_localhost(write_config, tmp_path):
    """Two torchrun launchers, one per 'machine' (--nnodes 2), meet at one endpoint and train one
    run, with the weights of one process."""
    config = write_config({"data": {"source": "sklearn:breast_cancer"}, "model": PLAIN, "seed": 3,
                           "train": {"epochs": 2, "batch_size": 64, "lr": 0.003}, "track": {"report": False}})
    endpoint = f"localhost:{free_port()}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-endpoint", endpoint]
    nodes = [subprocess.Popen([*launcher, "--node-rank", str(rank), "-m", "fitwell", "train", str(config),
                               "track.name=two-nodes", "-q"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    one = fitwell.train(config, {"track.name": "one"})
    assert weights_gap(one.path, tmp_path / "runs" / "two-nodes") < 1e-6


def resumed_gap() -> float:
    """One rank of a 2-process fit with dropout and batch norm, unbroken and resumed from rank 0's
    mid-epoch checkpoint (as ``--resume`` does); the largest weight difference."""
    from lightning_fabric import Fabric

    from fitwell.data.tensors import TensorData
    from fitwell.engine import Callback
    from fitwell.engine.loop import Trainer
    from fitwell.engine.losses import build_loss
    from fitwell.models import MLP

    torch.set_num_threads(1)
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    features, target = make_classification(600, 8, random_state=0)
    data = TensorData.from_numpy(features.astype("float32"), np.zeros((600, 0), dtype="int64"),
                                 target.astype("int64"))

    class Snapshot(Callback):
        def on_batch_end(self, trainer, state):
            if state.epoch == 1 and state.batch_in_epoch == 5:
                self.saved = trainer.checkpoint_state(state)

    def trainer(callbacks=()):
        torch.manual_seed(0)
        model = MLP(8, [], 1, hidden_sizes=[16], dropout=0.3, batch_norm=True)
        torch.manual_seed(100 + fabric.global_rank)  # each rank's own random stream from here
        return Trainer(model, build_loss("auto", "binary"), torch.optim.Adam(model.parameters(), lr=1e-2),
                       task="binary", epochs=3, batch_size=32, fabric=fabric, callbacks=callbacks)

    snapshot = Snapshot()
    unbroken = trainer([snapshot])
    unbroken.fit(data)
    resumed = trainer()
    resumed.fit(data, checkpoint=fabric.broadcast(snapshot.saved, src=0))
    before, after = unbroken.module.state_dict(), resumed.module.state_dict()
    return max(float((before[k].float() - after[k].float()).abs().max()) for k in before)


def test_a_resume_on_two_processes_draws_the_same_dropout():
    from fitwell.engine.distributed import launch

    assert launch(resumed_gap, (), 2, threads=1) == 0.0
