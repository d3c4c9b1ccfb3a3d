"""The lifecycle of one run, shared by ``train``, ``cv``, ``tune`` and ``ensemble``.

``start_run`` loads and resolves the config, seeds, prepares the data, resolves the task and
target, and plans the run directory -- nothing is written yet, so a bad config or bad data leaves
nothing behind. ``open_run`` creates the directory once the caller has validated everything it
builds (model, loss, callbacks), writes the resolved config, ``env.json``, ``data.json``, the
fitted preprocessing and the audit. ``finish_run_directory`` writes the permutation importance,
``manifest.json`` (a hash of every artifact, checked on load) and marks the run completed.
``guard`` marks a run failed (with the reason) or interrupted whatever ends it, and removes a
directory a user error left before any training happened.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fitwell.config.load import ConfigLike, dump_config, load_config
from fitwell.config.resolve import replace_values, resolve_data, resolve_defaults
from fitwell.config.schema import RunConfig
from fitwell.data.prepare import PreparedData, prepare
from fitwell.engine.build import seed_everything, set_deterministic
from fitwell.errors import TrainingFailed, UserError
from fitwell.files import sha256, write_json, write_text
from fitwell.track.finish import run_audit
from fitwell.track.run_dir import RunDir, default_run_name, environment

# Folders and files a manifest leaves out: they change after the run (trackers, checkpoints) or
# describe the run's state rather than its result.
NOT_IN_MANIFEST = ("checkpoints", "tensorboard", "wandb", "mlruns", "status.json", "manifest.json")


def console_say(console) -> Callable[[str], None]:
    """``say(text)``: print to a Rich console, or nothing when there is none."""
    if console is None:
        return lambda text: None
    return lambda text: console.print(text, soft_wrap=True)


def config_stem(config: ConfigLike | None, default: str) -> str:
    """The run-name stem: a YAML file's name, a config dict's data file's name, else ``default``."""
    if isinstance(config, (str, Path)):
        return Path(config).stem
    source = config.get("data", {}).get("source") if isinstance(config, Mapping) else None
    if isinstance(source, str) and source and not source.startswith("sklearn:"):
        return Path(source).stem or default
    return default


def load_run_config(config: ConfigLike | None, overrides=None) -> RunConfig:
    """Validate, apply overrides, fill what follows from the config alone (frozen)."""
    return resolve_defaults(load_config(config, overrides))


PROCESS_KEYS = ("train.devices", "train.num_nodes")  # what a resumed run may change


def resume_overrides(overrides: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """A resumed run keeps its saved config; only how many processes train it may change."""
    if not overrides:
        return {}
    pairs = dict(overrides) if isinstance(overrides, Mapping) else dict(
        item.split("=", 1) if "=" in item else (item, None) for item in overrides)
    others = sorted(set(pairs) - set(PROCESS_KEYS))
    if others:
        raise UserError(f"--resume continues a run with its saved config; {', '.join(others)} cannot change"
                        f" (only {' and '.join(PROCESS_KEYS)} can: a checkpoint of N processes resumes on M)")
    try:
        return {key: int(value) for key, value in pairs.items()}
    except (TypeError, ValueError):
        raise UserError(f"{', '.join(pairs)}: give a whole number, e.g. train.devices=2") from None


def resumed_config(resume: str | Path, overrides) -> RunConfig:
    """A run directory's saved config with the process counts of ``overrides``."""
    from fitwell.track.run_dir import resumable

    values = resume_overrides(overrides)
    run_dir = RunDir(resume)
    if not run_dir.config.exists():
        raise UserError(f"{run_dir.path} is not a fitwell run directory (no config.yaml)")
    if run_dir.metrics.exists():
        raise UserError(f"{run_dir.path} already finished training; nothing to resume")
    if not resumable(run_dir.path):
        raise UserError(f"{run_dir.path} stopped before its first checkpoint, so there is nothing to resume;"
                        f" start it again: fitwell train {run_dir.config}")
    return replace_values(load_run_config(run_dir.config), values)


@dataclass
class RunStart:
    """A run that has its resolved config and prepared data; ``run_dir`` exists after ``open_run``."""

    config: RunConfig
    prepared: PreparedData
    run_dir: RunDir
    say: Callable[[str], None]
    console: Any = None
    started_at: float = field(default_factory=time.monotonic)  # duration_s and time budgets count from here
    resumed: bool = False
    training_started: bool = False  # set once the loop runs: a user error after it keeps the directory
    fabric: Any = None  # this process's Fabric when several processes train the run

    def resolve(self, values: Mapping[str, Any]) -> None:
        """Measured values (``lr: auto``) join the resolved config before it is written."""
        self.config = replace_values(self.config, values)


def command_started_at() -> float:
    """When this process started, as a ``time.monotonic()`` reading (Linux: /proc/self/stat's start
    time against the boot clock; elsewhere: now), so a time limit covers the interpreter's start-up
    and imports too (about 3 s before the first line of a run)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), 3600.0)


def no_test_split(path) -> str:
    """What a run with ``split.test: 0`` says instead of test metrics."""
    return (f"no test split (split.test: 0): score your own test file once with"
            f" `fitwell evaluate {path} --data FILE`")


def start_run(config: RunConfig, *, stem: str, data: pd.DataFrame | None = None, console=None,
              run_dir: RunDir | None = None, preprocessor=None, started_at: float | None = None,
              **options) -> RunStart:
    """Seed, prepare the data (``options`` go to ``prepare``), resolve the task and target, and plan
    the run directory (``run_dir`` given: a resumed run's). Nothing is written. The run's clock
    counts from ``started_at`` (a ``time.monotonic()`` reading; default now)."""
    started_at = time.monotonic() if started_at is None else started_at
    say = console_say(console)
    set_deterministic(config.train.deterministic)
    seed_everything(config.seed)
    if config.privacy is not None and preprocessor is None:
        from fitwell.privacy.preprocess import private_fit

        options["fit_preprocessor"] = private_fit(config)
    from fitwell.data.out_of_core import prepare_streamed, streams

    prepare_data = prepare_streamed if streams(config, data) else prepare
    prepared = prepare_data(config, data, preprocessor=preprocessor, **options)
    config = resolve_data(config, prepared.task, prepared.plan.target)
    for note in prepared.notes:
        say(f"[yellow]data:[/] {note}")
    sizes = prepared.sizes()
    rows = prepared.out_of_core["rows"] if prepared.out_of_core else len(prepared.frame)
    say(f"task [bold]{prepared.task}[/], {rows} rows -> train {sizes['train']},"
        f" val {sizes['val']}, test {sizes['test']}")
    resumed = run_dir is not None
    if run_dir is None:
        name = config.track.name or default_run_name(stem)
        run_dir = RunDir.plan(config.track.runs_dir, name, config.track.overwrite)
    return RunStart(config, prepared, run_dir, say, console, started_at=started_at, resumed=resumed)


def open_run(start: RunStart, audit: bool = True) -> None:
    """Create the run directory and write what a run starts with: the audit, the resolved config,
    ``env.json``, ``data.json`` and the fitted preprocessing."""
    run_dir = start.run_dir
    if start.resumed:
        return
    run_dir.make()
    run_dir.set_status("running")
    if audit:
        run_audit(start.config, start.prepared, run_dir, start.console, start.say)
    write_start_artifacts(start)


def write_start_artifacts(start: RunStart) -> None:
    run_dir = start.run_dir
    write_text(run_dir.config, dump_config(start.config))
    write_json(run_dir.env, environment(start.config.seed))
    write_json(run_dir.data_report, start.prepared.summary())
    start.prepared.preprocessor.save(run_dir.preprocess)


@contextmanager
def guard(start: RunStart):
    """Keep the run's status true whatever ends it: ``failed`` with the reason, ``interrupted``
    (resumable when a checkpoint exists); a user error before any training removes the directory
    this run created, so no empty run is left behind."""
    run_dir = start.run_dir
    try:
        yield
    except UserError:
        if not start.resumed and not start.training_started and run_dir.path.is_dir():
            shutil.rmtree(run_dir.path, ignore_errors=True)
        elif run_dir.path.is_dir():
            run_dir.set_status("failed", "stopped by a user error; see the message printed")
        raise
    except TrainingFailed as err:
        run_dir.set_status("failed", str(err))
        raise
    except KeyboardInterrupt:
        if run_dir.path.is_dir():
            run_dir.set_status("interrupted", "stopped by the user (Ctrl-C)")
        raise
    except Exception as err:
        if run_dir.path.is_dir():
            run_dir.set_status("failed", f"{type(err).__name__}: {err}")
        raise


@contextmanager
def owned_folder(folder: Path):
    """A folder of many runs (``cv``, ``tune``): created here; a user error before any run in it
    finished removes it again, so a refused config leaves nothing behind."""
    folder = Path(folder)
    existed = folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except UserError:
        if not existed and not any(folder.rglob("metrics.json")):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def permutation_importance(start: RunStart, run, rows: Sequence[int]) -> None:
    """``importance.json`` on the given (test) rows when ``explain.permutation`` is on."""
    config = start.config
    if not config.explain.permutation:
        return
    from fitwell.evaluate.explain import permutation_importance as importance

    raw = start.prepared.frame.iloc[rows]
    write_json(start.run_dir.path / "importance.json",
               importance(run, raw, config.explain.repeats, config.seed))


def write_manifest(run_dir: RunDir) -> dict[str, str]:
    """``manifest.json``: the SHA-256 of every artifact, checked when the run is loaded."""
    hashes = {}
    for path in sorted(run_dir.path.rglob("*")):
        relative = path.relative_to(run_dir.path)
        if not path.is_file() or relative.parts[0] in NOT_IN_MANIFEST or path.name.endswith(".tmp"):
            continue
        hashes[relative.as_posix()] = sha256(path)
    import fitwell

    write_json(run_dir.manifest, {"fitwell": fitwell.__version__, "sha256": hashes})
    return hashes


def write_drift_reference(start: RunStart) -> None:
    """``reference.json``: the training split's profile, the test predictions' and the test metrics,
    which ``fitwell monitor`` compares new data with (fitwell.evaluate.drift)."""
    from fitwell.evaluate.drift import reference_profile

    prepared, run_dir = start.prepared, start.run_dir
    plan = prepared.plan
    kinds = {c: "date" if c in plan.dates else "number" if k == "numeric" else "text" if k == "text"
             else "category" for c, k in plan.kinds.items()}
    raw = prepared.raw if prepared.raw is not None else prepared.frame
    index = prepared.frame.index[prepared.split.train]
    index = index[index.isin(raw.index)]  # rows data.synthetic added are not in the table as loaded
    rows = raw.loc[index, [c for c in kinds if c in raw.columns]]
    predictions = pd.read_csv(run_dir.test_predictions) if run_dir.test_predictions.exists() else None
    metrics = run_dir.read_json(run_dir.metrics).get("test") if run_dir.metrics.exists() else None
    write_json(run_dir.path / "reference.json", reference_profile(rows, kinds, predictions, prepared.task,
                                                                  metrics))


def finish_run_directory(start: RunStart) -> None:
    """The last step of a finished run: the drift reference, the manifest, then the status
    ``completed``."""
    write_drift_reference(start)
    write_manifest(start.run_dir)
    start.run_dir.set_status("completed")


def finish_task_run(start: RunStart, summary: dict, renderer, trackers=()) -> None:
    """The last steps of a run of a task beyond labels (reinforcement, clustering, ...):
    ``metrics.json``, its report page (``renderer(path) -> html``), the trackers' final numbers,
    the manifest, then the status ``completed``."""
    from fitwell.track.report import write_report

    run_dir = start.run_dir
    write_json(run_dir.metrics, summary)
    if start.config.track.report:
        write_report(run_dir.path, renderer)
    for tracker in trackers:
        tracker.finish(summary)
    write_manifest(run_dir)
    run_dir.set_status("completed")
