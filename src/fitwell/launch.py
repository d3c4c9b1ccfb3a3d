"""``train.devices: N``: fitwell starts the N processes of a data-parallel run itself, under
TorchElastic (the engine behind torchrun), and returns the finished run as one process would.

Each process runs ``fitwell.pipeline.train`` and finds its rank in the environment TorchElastic set
(``fitwell.engine.distributed.join``); rank 0 writes the run directory. A user error in any process
comes back here with its message and its kind; a bug stays a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from fitwell.config.load import ConfigLike
from fitwell.config.resolve import replace_values
from fitwell.config.schema import RunConfig
from fitwell.engine.distributed import launched_processes, wants_processes
from fitwell.errors import ConfigError, DamagedRun, DataError, TrainingFailed, UserError
from fitwell.run import PROCESS_KEYS, config_stem, console_say, load_run_config
from fitwell.track.run_dir import default_run_name


def needs_launch(config: RunConfig) -> bool:
    """More processes asked for than a launcher started."""
    return wants_processes(config.train) > 1 and launched_processes() is None


def train_on_processes(resolved: RunConfig, config: ConfigLike | None, *, resume=None, data=None,
                       callbacks=(), console=None, started_at: float | None = None, score_test: bool = True,
                       callback_factory: tuple | None = None):
    """Train ``resolved`` on ``train.devices`` local processes; return rank 0's finished Run.

    ``callback_factory``: ``(function, args)``, picklable, called in every process for the run's
    callbacks (a tuning trial's pruning: rank 0 reports to the study's storage); ``score_test``
    False leaves the test split unscored (a trial)."""
    from fitwell.engine.distributed import launch
    from fitwell.track.bundle import Run

    train = resolved.train
    if train.num_nodes > 1:
        raise ConfigError(f"train.num_nodes {train.num_nodes}: several machines need a launcher on each:"
                          " torchrun --nnodes N --node-rank R --rdzv-endpoint HOST:PORT -m fitwell train"
                          " CONFIG, or a SLURM job (fitwell slurm CONFIG writes it)")
    if callbacks:
        raise ConfigError(f"train.devices {train.devices}: the run's processes are started anew and cannot"
                          " take callback objects; give callbacks in the config (train.callbacks) instead")
    if data is not None:
        raise ConfigError(f"train.devices {train.devices}: the run's processes read the data themselves;"
                          " write the frame to a Parquet file and set data.source to it")
    if resume is None:  # the parent names the run, so every process agrees on its directory
        name = resolved.track.name or default_run_name(config_stem(config, "run"))
        resolved = replace_values(resolved, {"track.name": name})
    console_say(console)(f"train.devices {train.devices}: starting {train.devices} processes (TorchElastic)")
    with tempfile.TemporaryDirectory(prefix="fitwell-launch-") as folder:
        failure = str(Path(folder) / "failure")
        overrides = {key: _get(resolved, key) for key in PROCESS_KEYS} if resume is not None else None
        job = (None if resume is not None else resolved, overrides, resume, console is not None,
               started_at, failure, score_test, callback_factory)
        try:
            path = launch(run_on_process, job, train.devices)
        except Exception as err:
            raise_failure(failure, train.devices, err)
    return Run(path)


def run_on_process(config, overrides, resume, show: bool, started_at, failure: str, score_test: bool = True,
                   callback_factory: tuple | None = None) -> str | None:
    """One process of a launched run: train (rank 0 shows progress); a user error is written to
    ``failure.<rank>`` for the launching process and ends this one with exit code 2."""
    from rich.console import Console

    from fitwell.pipeline import train

    rank = int(os.environ.get("RANK", "0"))
    console = Console(stderr=True) if show and rank == 0 else None
    try:
        callbacks = [] if callback_factory is None else callback_factory[0](*callback_factory[1])
        run = train(config, overrides, resume=resume, console=console, started_at=started_at,
                    callbacks=callbacks, score_test=score_test)
    except (UserError, TrainingFailed) as err:
        Path(f"{failure}.{rank}").write_text(json.dumps({"kind": type(err).__name__, "message": str(err)}))
        sys.exit(2)
    return None if run is None else str(run.path)


def raise_failure(failure: str, processes: int, error: Exception):
    """Raise the first process's user error or training failure as its own kind; else ``error``."""
    kinds = {cls.__name__: cls for cls in (UserError, ConfigError, DataError, DamagedRun, TrainingFailed)}
    for rank in range(processes):
        path = Path(f"{failure}.{rank}")
        if path.exists():
            found = json.loads(path.read_text())
            raise kinds.get(found["kind"], UserError)(found["message"]) from None
    raise error


def _get(config: RunConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def sbatch_script(config: Path, overrides: list[str], *, nodes: int, gpus_per_node: int,
                  tasks_per_node: int | None = None, cpus_per_task: int | None = None,
                  time_limit: str | None = None, partition: str | None = None) -> str:
    """A SLURM batch script that trains ``config`` on ``nodes`` machines: one task per GPU (or
    ``tasks_per_node`` CPU processes), started by ``srun``; each finds its rank in SLURM's
    environment through Fabric. The run is named after the job, so every node agrees on it."""
    resolved = load_run_config(config, overrides)
    tasks = gpus_per_node or tasks_per_node or 1
    stem = Path(config).stem
    lines = ["#!/bin/bash", f"#SBATCH --job-name=fitwell-{stem}", f"#SBATCH --nodes={nodes}",
             f"#SBATCH --ntasks-per-node={tasks}"]
    if gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    if cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_task}")
    lines += [f"#SBATCH --time={time_limit}"] if time_limit else []
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines.append(f"#SBATCH --output={Path(resolved.track.runs_dir).resolve()}/slurm-%j.out")
    accelerator = "gpu" if gpus_per_node else "cpu"
    command = [sys.executable, "-m", "fitwell", "train", str(Path(config).resolve()), *overrides,
               f"train.devices={tasks}", f"train.num_nodes={nodes}", f"train.accelerator={accelerator}"]
    command = [shlex.quote(part) for part in command]
    command.append(f'"track.name={resolved.track.name or stem}-$SLURM_JOB_ID"')
    if not cpus_per_task:
        lines.append("export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}")
    else:
        lines.append(f"export OMP_NUM_THREADS={cpus_per_task}")
    lines += ["", f"cd {shlex.quote(str(Path.cwd()))}", "srun " + " ".join(command), ""]
    return "\n".join(lines)
