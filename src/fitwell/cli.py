"""The ``fitwell`` command: audit, train, tune, cv, ensemble, predict, evaluate, export, serve,
monitor, report, runs.

User errors (config, data, arguments) end in one message and exit code 2, without a traceback
unless ``--debug``; anything else is a bug and exits 1 with its traceback.

Why this module is long: every subcommand's options live here, each importing its work inside the
function, so ``fitwell --help`` and ``fitwell runs`` stay instant; splitting it would only spread the
argument declarations over several files.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fitwell.errors import CheckFailed, TrainingFailed, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train models the way best practice says they should be trained.")
_options = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for user errors too.")):
    _options["debug"] = debug


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, str(value) if isinstance(value, int) else f"{value:.4f}")
    return table


@app.command()
def audit(
    source: str = typer.Argument(..., help="A YAML run config, a CSV/Parquet/JSONL file or sklearn:<name>."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    target: str | None = typer.Option(None, "--target", help="The column to predict (data.target)."),
    fail_on: str = typer.Option("none", "--fail-on", help="Exit 1 when a finding is this severe or worse:"
                                " error, warning or none."),
    out: Path | None = typer.Option(None, "--out", help="Write the audit as JSON here."),
    all_findings: bool = typer.Option(False, "--all", help="Show informational findings too."),
):
    """Audit a table before training: column types, missing values, outliers, duplicates, leakage,
    class imbalance and shift between the splits the config would make."""
    from fitwell.config import load_config
    from fitwell.data.audit import audit as audit_data
    from fitwell.data.prepare import prepare
    from fitwell.findings import SEVERITIES, at_least, findings_table, tally

    if fail_on not in ("none", *SEVERITIES[1:]):
        raise UserError(f"--fail-on must be error, warning or none (got {fail_on!r})")
    if source.endswith((".yaml", ".yml")):
        config = load_config(Path(source), overrides)
        if target is not None:
            from fitwell.config.resolve import replace_values

            config = replace_values(config, {"data.target": target})
    else:
        config = load_config({"data": {"source": source, "target": target}}, overrides)
    report = audit_data(prepare(config), config)
    console = Console(width=max(Console().width, 140))
    table = Table(title=f"{report.rows} rows, target {report.target!r} ({report.task}), split"
                  f" {report.split}", title_justify="left")
    for name in ("column", "role", "kind", "missing", "distinct", "outliers (IQR / z)", "alone"):
        table.add_column(name, justify="left" if name in ("column", "role", "kind") else "right")
    for column in report.columns:
        outliers = f"{column['outliers_iqr']} / {column['outliers_z']}" if "outliers_z" in column else ""
        alone = f"{column['alone_score']:.3f}" if "alone_score" in column else ""
        table.add_row(column["name"], column["role"], column["kind"], f"{column['missing']:.1%}",
                      str(column["distinct"]), outliers, alone)
    console.print(table)
    shown = report.findings if all_findings else at_least(report.findings, "warning")
    if shown:
        console.print(findings_table(shown, "findings"))
    counts = report.counts
    console.print(tally(counts) + ("" if all_findings else " (--all shows the notes)"), highlight=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    failing = at_least(report.findings, fail_on)
    if failing:
        Console(stderr=True).print(f"[bold red]audit failed:[/] {len(failing)} finding(s) at or above"
                                   f" {fail_on}", highlight=False)
        raise typer.Exit(1)


DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".json")


@app.command()
def train(
    config: Path | None = typer.Argument(None, help="A YAML run config, or a CSV/Parquet/JSONL table"
                                         " (then --target is needed and a preset does the rest)."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or data notes."),
    target: str | None = typer.Option(None, "--target", help="The column to predict (data.target)."),
    time_limit: float | None = typer.Option(None, "--time-limit", help="Seconds for the whole run, data"
                                            " to report (ensemble.time_limit, or train.max_time)."),
    preset: str | None = typer.Option(None, "--preset", help="fast, good or best (fitwell/presets);"
                                      " a table without a config uses good."),
    task: str | None = typer.Option(None, "--task", help="binary, multiclass or regression (data.task);"
                                    " clustering, anomaly or embedding for a table without --target."),
):
    """Train from CONFIG -- or from a table with --target -- and score the test split once; or
    continue a run with --resume."""
    from fitwell.api import train as train_run
    from fitwell.run import command_started_at

    if resume is None and config is None:
        raise UserError("give a config file (fitwell train CONFIG), a table with --target (fitwell train"
                        " data.csv --target COL), or --resume RUN_DIR")
    flags = target is not None or time_limit is not None or preset is not None or task is not None
    if resume is not None:  # the saved config; only the process count may change (train.devices=1)
        given = [str(config)] if config is not None else []
        given += list(overrides or [])
        if flags or any("=" not in item for item in given):
            raise UserError("--resume continues a run with its saved config; drop CONFIG and flags (only"
                            " train.devices=N / train.num_nodes=N may follow)")
        values, source = given, None
    else:
        values = command_line_config(config, overrides, target, time_limit, preset, task)
        source = values.pop("__config__", config)
    out = Console()
    console = None if quiet else Console(stderr=True)
    # --time-limit / train.max_time count from the command's start: Python's imports included
    run = train_run(source, values or None, resume=resume, console=console,
                    started_at=command_started_at())
    if run is None:  # another process of a run torchrun started: rank 0 reports
        return
    if run.task == "reinforcement":
        out.print(_metrics_table("final evaluation", run.metrics))
    elif run.metrics:
        out.print(_metrics_table(f"test metrics ({run.task})", run.metrics))
    else:  # split.test 0
        out.print(f"no test split: fitwell evaluate {run.path} --data FILE scores your test file",
                  soft_wrap=True, highlight=False)
    if "members" in run.summary:
        members = ", ".join(run.summary["members"])
        out.print(f"ensemble: {run.summary['method']} of {members}", highlight=False)
    out.print(f"run directory: {run.path}", soft_wrap=True, highlight=False)


def streamed_table(path: Path) -> bool:
    from fitwell.data.out_of_core import too_large

    return path.exists() and too_large(path)


def command_line_config(config: Path, overrides, target, time_limit, preset, task) -> dict:
    """The overrides ``fitwell train`` builds from its flags; a table instead of a YAML file becomes
    a config of its own (``__config__``) with the good preset unless --preset says otherwise (or
    ``privacy.*`` overrides ask for a private run: one network, no preset)."""
    from fitwell.config.load import parse_overrides

    values = dict(parse_overrides(overrides))
    table = config.suffix.lower() in DATA_SUFFIXES or config.is_dir()
    unsupervised = task in ("clustering", "anomaly", "embedding")
    if table and unsupervised:  # no target, no preset: the task's own defaults
        values["__config__"] = {"data": {"source": str(config)}, "task": task}
        task = None
    elif table:
        if target is None:
            raise UserError(f"{config} is a table, not a config: say which column to predict with"
                            " --target COL, or --task clustering | anomaly | embedding (or give a YAML"
                            " config)")
        private = any(key == "privacy" or key.startswith("privacy.") for key in values)
        # a private run trains one network (a preset's ensemble is not accounted), and so does a
        # table larger than memory (streamed; the ensemble's boosting members would load it whole)
        one_network = private or (preset is None and streamed_table(config))
        values["__config__"] = {"data": {"source": str(config)},
                                "preset": preset or (None if one_network else "good")}
    elif preset is not None:
        values["preset"] = preset
    for key, value in (("data.target", target), ("data.task", task)):
        if value is not None:
            values[key] = value
    if time_limit is not None:
        from fitwell.config import load_config

        base = values.get("__config__", config)
        has_ensemble = load_config(base, {k: v for k, v in values.items() if k != "__config__"}).ensemble
        values["ensemble.time_limit" if has_ensemble is not None else "train.max_time"] = time_limit
    return values


@app.command()
def slurm(
    config: Path = typer.Argument(..., help="YAML run config."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Machines."),
    gpus_per_node: int = typer.Option(0, "--gpus-per-node", min=0, help="GPUs per machine (one process"
                                      " each); 0 trains on CPUs."),
    tasks_per_node: int = typer.Option(1, "--tasks-per-node", min=1, help="CPU processes per machine"
                                       " when --gpus-per-node is 0."),
    cpus_per_task: int | None = typer.Option(None, "--cpus-per-task", min=1, help="Cores per process."),
    time_limit: str | None = typer.Option(None, "--time", help="SLURM's wall time, e.g. 04:00:00."),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition."),
):
    """Print a SLURM batch script that trains CONFIG on --nodes machines (sbatch it)."""
    from fitwell.launch import sbatch_script

    print(sbatch_script(config, list(overrides or []), nodes=nodes, gpus_per_node=gpus_per_node,
                        tasks_per_node=tasks_per_node, cpus_per_task=cpus_per_task, time_limit=time_limit,
                        partition=partition), end="")


@app.command("lr-find")
def lr_find(
    config: Path = typer.Argument(..., help="YAML run config."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the plot (default track.runs_dir)."),
):
    """Learning-rate range test: train a copy while the rate grows; suggest a rate; save the plot."""
    from fitwell.pipeline import find_lr

    result, plot = find_lr(config, overrides, out)
    Console().print(f"suggested lr: {result.suggestion:.3g}  (tested {len(result.lrs)} rates from"
                    f" {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}; plot: {plot})", soft_wrap=True)


@app.command("tune")
def tune_command(
    config: Path | None = typer.Argument(None, help="YAML run config with a tune section."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    trials: int | None = typer.Option(None, "--trials", help="Finished trials wanted (default tune.trials)."),
    workers: int = typer.Option(1, "--workers", help="Trials run in parallel, as processes."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna RDB URL (PostgreSQL: many machines)."),
    study: str | None = typer.Option(None, "--study", help="Study name (default the config's name)."),
    show: Path | None = typer.Option(None, "--show", help="Print a finished study's results."),
):
    """Search hyperparameters with Optuna; every trial is a real run; the best is retrained and
    scored on the test split once."""
    out = Console()
    if show is not None:
        from fitwell.tune.report import show as show_study

        show_study(show, Console(width=max(out.width, 160)))
        return
    if config is None:
        raise UserError("give a config file (fitwell tune CONFIG) or --show RUNS/STUDY")
    from fitwell.tune import tune

    summary = tune(config, overrides, trials=trials, workers=workers, storage=storage, study=study,
                   console=Console(stderr=True))
    out.print(f"best trial {summary['best_trial']}: {summary['best_params']}", soft_wrap=True)
    out.print(f"validation {summary['metric']}: {summary['best_validation']}", soft_wrap=True)
    kept = "best trial" if "privacy" in summary else "retrained best"  # a private search keeps its trial
    out.print(_metrics_table(f"test metrics of the {kept} (scored once)", summary["test"]))
    out.print(f"study directory: {Path(summary['best_run']).parent}", soft_wrap=True, highlight=False)


@app.command("cv")
def cv_command(
    config: Path = typer.Argument(..., help="YAML run config."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    folds: int = typer.Option(5, "--folds", help="Number of folds."),
    repeats: int = typer.Option(1, "--repeats", help="Repeat with reshuffled folds."),
):
    """Cross-validate CONFIG: preprocessing fitted inside each fold; mean and std of every metric;
    out-of-fold predictions saved. split.method picks stratified / random / group / time folds."""
    from fitwell.cv.cross_validation import cross_validate

    summary = cross_validate(config, overrides, folds=folds, repeats=repeats,
                             console=Console(stderr=True))
    title = f"{folds}-fold cross-validation x {repeats} ({summary['task']})"
    table = Table(title=title, title_justify="left")
    for column in ("metric", "mean", "std"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, mean in summary["mean"].items():
        table.add_row(metric, f"{mean:.4f}", f"{summary['std'][metric]:.4f}")
    Console().print(table)
    Console().print(f"folds, oof.csv and cv.json in {summary['folder']}", soft_wrap=True, highlight=False)


@app.command("ensemble")
def ensemble_command(
    config: Path = typer.Argument(..., help="YAML run config with an 'ensemble' section."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted key=value overrides."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No member, combination or diversity"
                               " tables (fitwell train's flag)."),
):
    """Fit the ensemble of CONFIG: out-of-fold predictions, members, the configured combiner;
    member, combination and diversity tables; one run directory that fitwell predict reads."""
    from fitwell.ensemble import fit_ensemble

    run = fit_ensemble(config, overrides, console=None if quiet else Console(stderr=True, width=110))
    out = Console()
    out.print(_metrics_table(f"test metrics ({run.task})", run.metrics))
    out.print(f"ensemble: {run.summary['method']} of {', '.join(run.summary['members'])}", highlight=False)
    out.print(f"run directory: {run.path}", soft_wrap=True, highlight=False)


def one_data_file(rows: Path | None, data: Path | None) -> Path | None:
    """The file of rows given after the run directory or with --data (not two different ones)."""
    if rows is not None and data is not None and rows != data:
        raise UserError(f"two files of rows: {rows} and --data {data}; give one")
    return rows or data


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    rows: Path | None = typer.Argument(None, help="The rows to predict, as --data."),
    data: Path | None = typer.Option(None, "--data", help="CSV/Parquet/JSONL rows to predict (a"
                                     " reinforcement run: observations, a column per number)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write predictions (CSV); stdout if unset."),
    tta: int | None = typer.Option(None, "--tta", help="Test-time augmentation: average over N augmented"
                                   " copies (default: the run's augment.tta)."),
    episodes: int | None = typer.Option(None, "--episodes", min=1, help="A reinforcement run: play N"
                                        " episodes of its policy and print their returns."),
):
    """Predict labels (and class probabilities) or values for new rows; a reinforcement run's
    actions for observations, or its returns over --episodes N."""
    from fitwell.serve import load_run

    data = one_data_file(rows, data)
    if episodes is None and data is None:
        raise UserError("give --data FILE (rows to predict), or --episodes N for a reinforcement run")
    loaded = load_run(run_dir)
    if episodes is not None:
        predictions = episode_returns(loaded, episodes)
    elif tta is None:
        predictions = loaded.predict(data)
    else:
        predictions = loaded.predict(data, tta=tta)
    if out is None:
        predictions.to_csv(sys.stdout, index=False)
        return
    from fitwell.files import write_with

    try:
        write_with(out, lambda tmp: predictions.to_csv(tmp, index=False))
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        raise UserError(f"--out {out}: cannot write there ({err.strerror or err}); give a path in a folder"
                        " you can write to") from err
    Console(stderr=True).print(f"wrote {len(predictions)} predictions to {out}", soft_wrap=True)


def episode_returns(loaded, episodes: int):
    """``--episodes N``: a table of each episode's return, the mean +- std on stderr."""
    import numpy as np
    import pandas as pd

    if getattr(loaded, "task", None) != "reinforcement":
        raise UserError("--episodes is for a reinforcement run (task: reinforcement); give --data FILE")
    returns = loaded.rollout(episodes)
    Console(stderr=True).print(f"mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over"
                               f" {episodes} episodes", soft_wrap=True, highlight=False)
    return pd.DataFrame({"episode": range(1, episodes + 1), "return": returns})


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished single-model run directory."),
    format: str = typer.Option("onnx", "--format", help="onnx: the whole pipeline, raw columns in."),
    out: Path | None = typer.Option(None, "--out", help="Where to write it (default RUN/model.onnx)."),
    check: Path | None = typer.Option(None, "--check", help="Rows (CSV/Parquet/JSONL) to compare onnxruntime"
                                      " with fitwell predict on; fails above 1e-5."),
):
    """Export the run as one ONNX graph: preprocessing, network and output, checked in onnxruntime."""
    if format != "onnx":
        raise UserError(f"--format {format!r}: only onnx is supported")
    from fitwell.serve.export import check_export, export_onnx

    path = export_onnx(run_dir, out)
    console = Console()
    console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    if check is not None:
        result = check_export(run_dir, path, check)
        agree = f", labels equal {result['labels_equal']:.1%}" if "labels_equal" in result else ""
        console.print(f"onnxruntime vs fitwell predict on {result['rows']} rows of {check.name}: max"
                      f" |difference| {result['max_difference']:.2e} ({result['measure']}){agree}",
                      highlight=False)
        if result["max_difference"] > 1e-5 or result.get("labels_equal", 1.0) < 1.0:
            raise CheckFailed(f"the ONNX graph {path} does not predict what fitwell predict does on {check}"
                              " (see above): serve the run itself (fitwell serve RUN) rather than this graph")


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 opens it to the network."),
    port: int = typer.Option(8000, "--port"),
    max_rows: int = typer.Option(10_000, "--max-rows", help="Most rows one request may hold (413 above)."),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="Largest request body (413 above)."),
    api_key_env: str = typer.Option("FITWELL_API_KEY", "--api-key-env", help="When this environment"
                                    " variable is set, requests need its value in the x-api-key header."),
    batch_window_ms: float = typer.Option(0.0, "--batch-window-ms", help="How long a batch waits for more"
                                          " requests (0: it takes those queued while the last one ran)."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: the run's model.onnx (fitwell"
                                " export) in onnxruntime."),
):
    """Serve the run over HTTP: POST /predict, GET /health /ready /schema /metrics /docs."""
    from fitwell.serve.server import ServeSettings
    from fitwell.serve.server import serve as run_server

    settings = ServeSettings(max_rows=max_rows, max_body_bytes=int(max_body_mb * 1024 * 1024),
                             api_key_env=api_key_env, batch_window_ms=batch_window_ms, runtime=runtime)
    def announce():
        Console(stderr=True).print(f"serving {run_dir} on http://{host}:{port} (docs: /docs)", soft_wrap=True,
                                   highlight=False)

    run_server(run_dir, host=host, port=port, settings=settings, announce=announce)


@app.command()
def monitor(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    overrides: list[str] | None = typer.Argument(None, help="Thresholds for this check:"
                                                 " monitor.psi=0.1"),
    data: Path = typer.Option(..., "--data", help="New rows (CSV/Parquet/JSONL) to compare with training."),
    labels: bool = typer.Option(False, "--labels", help="The data has the target: also check performance."),
    out: Path | None = typer.Option(None, "--out", help="Folder for drift.json and drift.html"
                                    " (default RUN/monitor/<file>-<time>)."),
):
    """Drift of new data (and predictions, and with --labels performance) against the training
    split; exit code 3 when an alert fires."""
    from fitwell.serve.monitor import monitor as check_drift
    from fitwell.serve.monitor import parse_overrides

    result = check_drift(run_dir, data, labels=labels, overrides=parse_overrides(overrides), out=out)
    console = Console()
    console.print(_drift_table(result, data.name))
    perf = result.get("performance")
    if perf:
        low, high = perf["interval_95"]
        console.print(f"{perf['metric']}: {perf['value']:.4f} (95% interval {low:.4f}-{high:.4f}; test split"
                      f" {perf.get('test_value', float('nan')):.4f})", highlight=False)
    console.print(f"report: {result['folder']}/drift.html", soft_wrap=True, highlight=False)
    if result["alert"]:
        Console(stderr=True).print(f"[bold red]alert:[/] {len(result['alerts'])} finding(s) over the"
                                   " thresholds", highlight=False)
        raise typer.Exit(3)


def _drift_table(result: dict, name: str) -> Table:
    table = Table(title=f"drift of {name} ({result['rows']} rows)", title_justify="left")
    for column_name in ("column", "kind", "drift", "details"):
        table.add_column(column_name)
    from fitwell.evaluate.drift import compared_columns

    for column_name, column in compared_columns(result).items():
        if column["reasons"]:
            detail = "; ".join(column["reasons"])
        elif "wasserstein" in column:
            detail = f"Wasserstein {column['wasserstein']:.3f} sd, PSI {column['psi']:.3f}"
        else:
            detail = f"total variation {column.get('total_variation', 0):.3f}"
        table.add_row(column_name, column["kind"], "[red]ALERT[/]" if column["drift"] else "ok", detail)
    return table


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    rows: Path | None = typer.Argument(None, help="Labelled rows, as --data."),
    data: Path | None = typer.Option(None, "--data", help="Labelled CSV/Parquet/JSONL rows."),
    out: Path | None = typer.Option(None, "--out", help="Also write the metrics here as JSON."),
):
    """Score a finished run on another labelled file."""
    from fitwell.serve import load_run

    data = one_data_file(rows, data)
    if data is None:
        raise UserError("give the labelled rows to score: fitwell evaluate RUN_DIR --data FILE")

    metrics = load_run(run_dir).evaluate(data)
    Console().print(_metrics_table(f"metrics on {data.name}", metrics))
    if out is not None:
        out.write_text(json.dumps(metrics, indent=2))


@app.command("privacy-audit")
def privacy_audit(
    run_dir: Path = typer.Argument(..., help="A finished single-model run directory."),
    data: Path | None = typer.Option(None, "--data", help="The table it trained on, when data.source"
                                                          " does not name it."),
    reference: bool = typer.Option(True, "--reference/--no-reference",
                                   help="Also the calibrated attack: a reference model trained on half"
                                        " of the held-out rows."),
    seed: int = typer.Option(0, "--seed"),
):
    """Attack a trained model: can its training rows be told from rows it never saw?"""
    from fitwell.api import privacy_audit as audit

    result = audit(run_dir, data, reference=reference, seed=seed)
    table = Table(title=f"membership inference: {result['members']} training rows vs"
                        f" {result['non_members']} held-out rows")
    for name in ("attack", "ROC AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "advantage", "epsilon >="):
        table.add_column(name, justify="left" if name == "attack" else "right")
    for name, row in result["attacks"].items():
        table.add_row(name, f"{row['roc_auc']:.3f}", f"{row['tpr_at_1%_fpr']:.3f}",
                      f"{row['tpr_at_0.1%_fpr']:.3f}", f"{row['advantage']:.3f}",
                      f"{result['epsilon_lower_bounds'][name]:.2f}")
    console = Console()
    console.print(table)
    claimed = result["claimed_epsilon"]
    verdict = f"the run claims epsilon {claimed:g}" if claimed is not None else "the run is not private"
    console.print(f"empirical epsilon >= {result['epsilon_lower_bound']:.2f} (95% confidence,"
                  f" {result['strongest']} attack); {verdict}\nwritten: {run_dir / 'privacy_audit.json'}",
                  soft_wrap=True, highlight=False)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory."),
):
    """(Re)write RUN/report.html: config, audit, curves, test plots, importance, bias, doctor."""
    from fitwell.track.report import write_report

    renderer = None
    if (run_dir / "policy.zip").exists():  # a reinforcement run
        from fitwell.tasks.rl_report import render_policy_run as renderer
    elif (run_dir / "unsupervised.skops").exists():
        from fitwell.tasks.unsupervised_report import render_unsupervised_run as renderer
    Console().print(f"report: {write_report(run_dir, renderer)}", soft_wrap=True, highlight=False)


runs_app = typer.Typer(help="List runs, or compare two.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@runs_app.callback(invoke_without_command=True)
def runs_list(
    ctx: typer.Context,
    runs_dir: Path = typer.Option(Path("runs"), "--dir", help="The runs folder (track.runs_dir)."),
):
    """A table of the runs under --dir: name, kind, task, status, main test metric, duration."""
    if ctx.invoked_subcommand is not None:
        return
    from fitwell.track.runs import list_runs

    rows = list_runs(runs_dir)
    table = Table(title=f"{len(rows)} runs in {runs_dir}", title_justify="left")
    for name in ("run", "kind", "task", "status", "test metric", "value", "val_loss", "seconds", "started"):
        table.add_column(name, justify="right" if name in ("value", "val_loss", "seconds") else "left")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["task"] or "", row["status"], row["metric"] or "",
                      _cell(row["value"]), _cell(row["val_loss"]), _cell(row["duration_s"]),
                      (row["started"] or "").replace("T", " ")[:19])
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for row in rows:
        if row["status"] in ("failed", "interrupted") and row["reason"]:
            console.print(f"{row['name']}: {row['status']}: {row['reason']}", soft_wrap=True, highlight=False)


@runs_app.command("compare")
def runs_compare(
    first: Path = typer.Argument(..., help="A run directory."),
    second: Path = typer.Argument(..., help="Another run directory."),
    everything: bool = typer.Option(False, "--all", help="Show every config key."),
):
    """Two runs side by side: the config keys that differ, then every metric with the difference."""
    from fitwell.track.runs import compare_runs

    result = compare_runs(first, second, everything)
    console = Console(width=max(Console().width, 140))
    table = Table(title="config" + ("" if everything else " (keys that differ)"), title_justify="left")
    for name in ("key", first.name, second.name):
        table.add_column(name)
    for key, a, b in result["config"]:
        table.add_row(key, _cell(a), _cell(b))
    console.print(table)
    table = Table(title="metrics", title_justify="left")
    for name in ("metric", first.name, second.name, "difference"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name, a, b, delta in result["metrics"]:
        table.add_row(name, _cell(a), _cell(b), "" if delta is None else f"{delta:+.4g}")
    console.print(table)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (0 ok, 2 user error, 1 failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _options["debug"] = "--debug" in argv
    from rich.markup import escape  # an error's own brackets ([low, high]) are not markup

    err = Console(stderr=True)
    try:
        app(args=argv, prog_name="fitwell", standalone_mode=True)
    except SystemExit as done:  # standalone mode ends every command, and usage errors (2), so
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except UserError as error:
        if _options["debug"]:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    except (TrainingFailed, CheckFailed) as error:
        if _options["debug"]:
            traceback.print_exc()
        said = "training failed" if isinstance(error, TrainingFailed) else "check failed"
        err.print(f"[bold red]{said}:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 1
    return 0


# What each command imports in any case (torch.optim's first optimizer imports torch._dynamo; the
# preprocessing is saved with skops; every run writes a report), imported up front by warm_start.
TRAINING = ("fitwell.api", "torch._dynamo", "skops.io", "matplotlib.figure")
COMMAND_MODULES = {"train": TRAINING, "tune": TRAINING, "cv": TRAINING, "ensemble": TRAINING,
                   "lr-find": TRAINING, "predict": ("fitwell.serve", "skops.io"),
                   "evaluate": ("fitwell.serve", "skops.io", "matplotlib.figure"),
                   "privacy-audit": TRAINING,
                   "report": ("fitwell.track.report", "matplotlib.figure"),
                   "serve": ("fitwell.serve.server", "skops.io"),
                   "monitor": ("fitwell.serve.monitor", "skops.io", "scipy.stats"),
                   "export": ("fitwell.serve.export", "skops.io", "torch._dynamo", "onnxruntime")}


def warm_start(argv: list[str]) -> None:
    """Import the modules the command will need with Python's cyclic garbage collector paused, then
    freeze them out of its sight. Imports make millions of long-lived objects and no garbage, yet
    they set off ~1,300 collections, seven of them full passes over torch, SymPy and scikit-learn:
    0.8 s of a 500-row ``fitwell train`` (bench/startup.py). Only the console command does this; a
    notebook or a test process imports once and keeps its collector as it is."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = COMMAND_MODULES.get(command, ())
    if not modules or "--help" in argv:
        return
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


def main() -> None:
    argv = sys.argv[1:]
    warm_start(argv)
    code = run_cli(argv)
    # The run is written and closed; without this, the collector's final passes over every module
    # make the interpreter's exit take ~1 s (0.14 s frozen). atexit handlers still run.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
