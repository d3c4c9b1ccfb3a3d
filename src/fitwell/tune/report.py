"""What a study leaves behind: summary, trials table, importances, plots; and ``tune --show``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

PLOTS = ("optimization_history", "parallel_coordinate", "param_importances")


def trials_frame(study):
    """One row per trial: number, state, value(s), seconds, epochs, and the real parameter values
    (list-valued choices such as layer sizes are stored by Optuna as indices; shown as values)."""
    import pandas as pd

    rows = []
    for trial in study.trials:
        row = {"number": trial.number, "state": trial.state.name}
        if len(study.directions) == 1:
            row["value"] = trial.value
        else:
            row.update({f"value_{i}": v for i, v in enumerate(trial.values or [])})
        row["seconds"] = trial.duration.total_seconds() if trial.duration else None
        row["pruned_at_epoch"] = trial.user_attrs.get("pruned_at_epoch")
        row["best_epoch"] = trial.user_attrs.get("best_epoch")
        row.update({k: json_value(v) for k, v in trial.user_attrs.get("overrides", trial.params).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def json_value(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_outputs(study, folder: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as vis

    trials_frame(study).to_csv(folder / "trials.csv", index=False)
    importances = {}
    if len(study.directions) == 1:
        with warnings.catch_warnings(record=True) as caught:  # caveats go into the summary
            warnings.simplefilter("always")
            try:
                importances = optuna.importance.get_param_importances(study)
            except (RuntimeError, ValueError) as err:  # too few trials, or one parameter only
                importances = {"unavailable": str(err)}
        notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
        if notes:
            summary["importance_caveats"] = notes
    summary["importances"] = importances
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    drawers = {"optimization_history": vis.plot_optimization_history,
               "parallel_coordinate": vis.plot_parallel_coordinate,
               "param_importances": vis.plot_param_importances}
    if len(study.directions) > 1:
        drawers = {"pareto_front": vis.plot_pareto_front}
    for name, draw in drawers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                kwargs = {"target": lambda t: t.values[0], "target_name": "objective 0"} \
                    if len(study.directions) > 1 and name != "pareto_front" else {}
                axes = draw(study, **kwargs)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(plots / f"{name}.png", dpi=90)
            plt.close(figure)
        except (ValueError, RuntimeError, IndexError) as err:
            (plots / f"{name}.txt").write_text(f"not drawn: {err}\n")


def show(folder: Path, console) -> dict:
    """Print a finished study's best trial, test score, importances and trials table."""
    import pandas as pd
    from rich.table import Table

    from fitwell.errors import UserError

    path = Path(folder) / "summary.json"
    if not path.exists():
        raise UserError(f"{folder} holds no finished study (no summary.json); run fitwell tune first")
    summary = json.loads(path.read_text())
    console.print(f"study [bold]{summary['study']}[/]: {summary['trials']} trials;"
                  f" best trial {summary['best_trial']} ({', '.join(summary['metric'])}"
                  f" = {summary['best_validation']} on validation)", soft_wrap=True)
    console.print(f"best parameters: {summary['best_params']}", soft_wrap=True)
    console.print(f"test split, scored once after tuning: {summary['test']}", soft_wrap=True)
    if summary.get("importances"):
        console.print(f"parameter importances: {summary['importances']}", soft_wrap=True)
    if summary.get("pareto_front"):
        console.print(f"Pareto front: {summary['pareto_front']}", soft_wrap=True)
    trials = pd.read_csv(Path(folder) / "trials.csv")
    table = Table(title="trials")
    for column in trials.columns:
        table.add_column(str(column).split(".")[-1], overflow="fold")
    for _, row in trials.iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    console.print(f"plots: {', '.join(sorted(p.name for p in (Path(folder) / 'plots').glob('*.png')))}"
                  f" in {Path(folder) / 'plots'}", soft_wrap=True)
    return summary
