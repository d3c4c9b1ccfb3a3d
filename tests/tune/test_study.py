import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from fitwell.cli import run_cli
from fitwell.errors import ConfigError
from fitwell.tune import tune

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def load(folder: Path, name: str = "study"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def test_study_on_sqlite_with_trials_as_runs(tune_config, tmp_path, capsys):
    path = tune_config({"trials": 4, "space": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "model.hidden_sizes": {"type": "categorical", "choices": [[8], [32, 16]]},
        "train.optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "train.momentum": {"type": "float", "low": 0.5, "high": 0.95, "when": {"train.optimizer": "sgd"}},
    }})
    assert run_cli(["tune", str(path)]) == 0
    folder = tmp_path / "runs" / "study"
    study = load(folder)
    assert len(study.get_trials(states=FINISHED)) == 4
    for trial in study.trials:
        run = folder / f"trial-{trial.number}"
        summary = json.loads((run / "metrics.json").read_text())
        assert "test" not in summary and summary["validation"]["val_loss"] == pytest.approx(trial.value)
        params = trial.user_attrs["overrides"]
        assert ("train.momentum" in params) == (params["train.optimizer"] == "sgd")
        assert params["model.hidden_sizes"] in ([8], [32, 16])
    result = json.loads((folder / "summary.json").read_text())
    assert result["best_trial"] == study.best_trial.number
    assert set(result["test"]) >= {"accuracy", "roc_auc"}
    assert json.loads((folder / "best" / "metrics.json").read_text())["test"] == result["test"]
    assert {p.name for p in (folder / "plots").glob("*.png")} == {
        "optimization_history.png", "parallel_coordinate.png", "param_importances.png"}
    assert (folder / "trials.csv").read_text().count("\n") == 5
    out = capsys.readouterr().out
    assert "scored once" in out
    assert run_cli(["tune", "--show", str(folder)]) == 0
    assert "best trial" in capsys.readouterr().out


def test_rerunning_resumes_the_study(tune_config, tmp_path):
    path = tune_config({"trials": 2})
    tune(path)
    tune(path, trials=4)  # same command, more trials wanted: continues
    study = load(tmp_path / "runs" / "study")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]


@pytest.mark.slow
def test_killed_study_resumes_without_lost_or_duplicated_trials(tune_config, tmp_path):
    path = tune_config({"trials": 6}, train={"epochs": 25, "batch_size": 8})
    folder = tmp_path / "runs" / "study"
    command = [sys.executable, "-m", "fitwell.cli", "tune", str(path)]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("trial-*/metrics.json"))) < 2:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the next trial
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = {t.number: t.params for t in load(folder).get_trials(states=FINISHED)}
    assert 2 <= len(before) < 6
    tune(path)  # the same command again, in this process (the kill needed one of its own)
    study = load(folder)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 6  # exactly the trials asked for
    assert {t.number: t.params for t in finished if t.number in before} == before  # none lost
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))  # none duplicated
    assert all((folder / f"trial-{t.number}" / "metrics.json").exists() for t in finished)


@pytest.mark.slow
def test_two_workers_share_one_study(tune_config, tmp_path):
    path = tune_config({"trials": 4})
    summary = tune(path, workers=2)
    study = load(tmp_path / "runs" / "study")
    finished = study.get_trials(states=FINISHED)
    assert 4 <= len(finished) <= 5  # MaxTrialsCallback may let one extra in with two workers
    assert len({t.user_attrs["pid"] for t in finished}) == 2
    assert summary["trials"] == len(study.trials)


def test_pruning_stops_bad_trials_early(tune_config, tmp_path):
    path = tune_config({"trials": 10, "pruner": "median", "startup_trials": 2, "metric": "val_loss",
                        "seed": 0,  # the sampler's seed: otherwise the worker's pid seeds it
                        "space": {"train.lr": {"type": "float", "low": 1e-6, "high": 3e-2, "log": True}}},
                       train={"epochs": 12, "optimizer": "sgd", "early_stopping": {"enabled": False}})
    tune(path)
    study = load(tmp_path / "runs" / "study")
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert pruned and complete
    assert all(t.user_attrs["pruned_at_epoch"] < 12 for t in pruned)
    folder = tmp_path / "runs" / "study"
    for trial in pruned:
        lines = (folder / f"trial-{trial.number}" / "history.jsonl").read_text().splitlines()
        assert len(lines) < 12  # fewer epochs than a full trial


def test_tpe_beats_the_median_random_trial(tune_config, tmp_path):
    space = {"train.lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
             "model.dropout": {"type": "float", "low": 0.0, "high": 0.6}}
    random_cfg = tune_config({"trials": 12, "sampler": "random", "study": "rand", "space": space},
                             name="r.yaml")
    tpe_cfg = tune_config({"trials": 12, "sampler": "tpe", "study": "tpe", "startup_trials": 4,
                           "space": space}, name="t.yaml")
    tune(random_cfg)
    tune(tpe_cfg)
    import statistics

    folder = tmp_path / "runs"
    random_values = [t.value for t in load(folder / "rand", "rand").get_trials(states=FINISHED)]
    assert load(folder / "tpe", "tpe").best_value < statistics.median(random_values)


def test_cross_validated_trials(tune_config, tmp_path):
    path = tune_config({"trials": 2, "cv": 3})
    tune(path)
    folder = tmp_path / "runs" / "study"
    study = load(folder)
    for trial in study.trials:
        assert len(trial.user_attrs["fold_scores"]) == 3
        assert trial.value == pytest.approx(sum(trial.user_attrs["fold_scores"]) / 3)
        assert len(list((folder / f"trial-{trial.number}").glob("fold-*/metrics.json"))) == 3


def test_multi_objective_pareto_front(tune_config, tmp_path):
    path = tune_config({"trials": 4, "sampler": "nsga2", "metric": ["val_loss", "num_params"],
                        "space": {"model.hidden_sizes": {"type": "categorical",
                                                         "choices": [[4], [16], [64, 32]]}}})
    summary = tune(path)
    assert summary["directions"] == ["minimize", "minimize"]
    assert summary["pareto_front"] and all(len(p["values"]) == 2 for p in summary["pareto_front"])
    assert (tmp_path / "runs" / "study" / "plots" / "pareto_front.png").exists()


def test_grid_sampler_covers_the_grid(tune_config, tmp_path):
    path = tune_config({"trials": 4, "sampler": "grid", "space": {
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.1},
        "train.optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]}}})
    tune(path)
    trials = load(tmp_path / "runs" / "study").trials
    seen = {(t.params["model.dropout"], t.params["train.optimizer"]) for t in trials}
    assert seen == {(0.0, "sgd"), (0.0, "adamw"), (0.1, "sgd"), (0.1, "adamw")}


@pytest.mark.parametrize("sampler", ["gp", "cmaes", "qmc"])
def test_other_samplers_run(tune_config, tmp_path, sampler):
    tune(tune_config({"trials": 3, "sampler": sampler, "startup_trials": 1, "space": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}}, train={"epochs": 2}))
    assert len(load(tmp_path / "runs" / "study").get_trials(states=FINISHED)) == 3


def _postgres_binaries():
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server on a free localhost port, for this test only."""
    import tempfile

    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    home = Path(tempfile.mkdtemp(prefix="fitwell-pg-"))  # outside pytest's root-only tmp folder
    data = home / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "fitwell",
                        "--auth=trust"], check=True, capture_output=True)
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(home / "pg.log"),
                        "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
        subprocess.run([*as_user, str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "fitwell", "studies"], check=True, capture_output=True)
        yield f"postgresql://fitwell@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_study_in_a_real_postgresql_server(tune_config, tmp_path, postgres):
    path = tune_config({"trials": 3})
    summary = tune(path, storage=postgres, study="pg-study")
    study = optuna.load_study(study_name="pg-study", storage=postgres)
    assert len(study.get_trials(states=FINISHED)) == 3 and summary["study"] == "pg-study"
    assert not (tmp_path / "runs" / "pg-study" / "study.db").exists()  # nothing went to SQLite


def test_retrain_on_train_and_validation(tune_config, tmp_path):
    path = tune_config({"trials": 2, "retrain_on": "train_val"})
    summary = tune(path)
    best = json.loads((tmp_path / "runs" / "study" / "best" / "metrics.json").read_text())
    trial = json.loads((tmp_path / "runs" / "study" / f"trial-{summary['best_trial']}" / "metrics.json")
                       .read_text())
    assert best["split"]["val"] == 0
    assert best["split"]["train"] == trial["split"]["train"] + trial["split"]["val"]
    assert best["epochs"] == (trial["best_epoch"] or trial["epochs"])  # the epochs the trial needed
    assert summary["retrained_on"] == "train_val" and "accuracy" in summary["test"]


def test_a_metric_the_runs_never_log_fails_before_training(tune_config, tmp_path):
    from fitwell.errors import ConfigError

    path = tune_config({"trials": 2, "metric": "val_acc"})  # data.task is auto: known only at run time
    with pytest.raises(ConfigError, match=r"'val_acc' is never logged for a binary task"):
        tune(path)
    assert not (tmp_path / "runs" / "study" / "trial-0" / "history.jsonl").exists()


def test_search_across_model_families(tune_config, tmp_path):
    config = tune_config({"sampler": "grid", "trials": 3, "space": {
        "model.name": {"type": "categorical", "choices": ["mlp", "resmlp", "tabular_transformer"]},
        "model.width": {"type": "categorical", "choices": [16]}}})
    summary = tune(config)
    names = {json.loads(p.read_text())["name"] for p in (tmp_path / "runs").glob("*/trial-*/model.json")}
    assert names == {"mlp", "resmlp", "tabular_transformer"}
    assert summary["test"]["roc_auc"] > 0.8


# Two machines start `fitwell tune` at about the same time; on a busy 2-core CI host one process's
# imports can take longer than the other's six small trials (seen: one pid ran all six). Each worker
# imports what costs time, then waits at a file barrier for the other, then runs the real CLI.
AFTER_BOTH_IMPORTED = """
import os, sys, time, pathlib
import optuna, torch, fitwell.cli, fitwell.tune
barrier = pathlib.Path(sys.argv.pop(1))
(barrier / str(os.getpid())).touch()
deadline = time.monotonic() + 120
while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.02)
sys.argv[0] = "fitwell"
fitwell.cli.main()
"""


@pytest.mark.slow
def test_two_machines_share_one_study_through_postgresql(tune_config, tmp_path, postgres):
    """The multi-machine recipe: the same `fitwell tune` command started independently (here two
    processes with their own run folders, as two machines would have) against one PostgreSQL
    study: the trials are shared out, each runs once, and each machine keeps the runs it trained."""
    path = tune_config({"trials": 6})
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    workers = [subprocess.Popen([sys.executable, "-c", AFTER_BOTH_IMPORTED, str(barrier), "tune", str(path),
                                 "--storage", postgres, "--study", "shared", f"track.runs_dir={folder}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for folder in machines]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()[-2000:]
    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = study.get_trials(states=FINISHED)
    assert 6 <= len(finished) <= 7  # the trial budget is the study's; each may let one extra in
    assert len({t.number for t in finished}) == len(finished)  # no trial twice
    pids = {t.user_attrs["pid"] for t in finished}
    assert len(pids) == 2  # both machines took trials
    ran = [p.name for folder in machines for p in (folder / "shared").glob("trial-*")]
    assert sorted(ran) == sorted(f"trial-{t.number}" for t in finished)  # each kept where it ran


@pytest.mark.slow
def test_a_trial_on_several_processes_reports_and_is_pruned_on_every_rank(tune_config, tmp_path):
    """train.devices 2 in a study: each trial is a 2-process run; rank 0 reports each epoch to the
    study's storage, the pruner's answer stops both processes, and the best is retrained on 2."""
    path = tune_config({"trials": 2, "pruner": "median", "startup_trials": 1},
                       {"devices": 2, "epochs": 2, "early_stopping": {"enabled": False}})
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name="ddp", storage=url, direction="minimize")
    lr = optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)
    study.add_trial(optuna.trial.create_trial(  # a finished trial far better at every epoch
        params={"train.lr": 0.01}, distributions={"train.lr": lr}, value=1e-4,
        intermediate_values={epoch: 1e-4 for epoch in range(1, 7)},
        user_attrs={"overrides": {"train.lr": 0.01}}))
    summary = tune(path, storage=url, study="ddp")
    trial = optuna.load_study(study_name="ddp", storage=url).trials[1]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["pruned_at_epoch"] == 1
    assert list(trial.intermediate_values) == [1]  # reported by rank 0 from its own process
    run = tmp_path / "runs" / "ddp" / "trial-1"
    assert len((run / "history.jsonl").read_text().splitlines()) == 1  # both ranks stopped there
    assert json.loads((run / "status.json").read_text())["pid"] != os.getpid()
    best = Path(summary["best_run"])
    assert summary["best_trial"] == 0 and json.loads((best / "status.json").read_text())["pid"] != os.getpid()
    assert summary["test"]["roc_auc"] > 0.5
    with pytest.raises(ConfigError, match="tune.cv"):
        tune(tune_config({"cv": 3}, {"devices": 2}))
