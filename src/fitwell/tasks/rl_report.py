"""``report.html`` of a reinforcement run: the final evaluation, the return curve, the rollout
GIF (inline, where the env renders to an array) and the config."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from fitwell.track.report import html_table, missing, new_figure, page, plot


def return_curve(history: list[dict]) -> str:
    if not history:
        return missing("no evaluation during training (the run was shorter than rl.eval_every steps)")
    figure = new_figure()
    axes = figure.subplots()
    steps = [row["step"] for row in history]
    mean = [row["val_mean_return"] for row in history]
    spread = [row["val_std_return"] for row in history]
    axes.plot(steps, mean, marker="o", label="evaluation (mean)")
    axes.fill_between(steps, [m - s for m, s in zip(mean, spread, strict=True)],
                      [m + s for m, s in zip(mean, spread, strict=True)], alpha=0.2)
    training = [(row["step"], row["train_episode_return"]) for row in history
                if row.get("train_episode_return") is not None]
    if training:
        axes.plot(*zip(*training, strict=True), linestyle="--", label="training episodes (last 100)")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return")
    axes.legend(loc="best")
    title = "Return during training (mean +- std of the evaluation episodes)"
    return f"<div class=plots>{plot(title, figure)}</div>"


def render_policy_run(path: str | Path) -> str:
    """The report page of a finished reinforcement run directory."""
    path = Path(path)
    summary = json.loads((path / "metrics.json").read_text())
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()
               if line.strip()] if (path / "history.jsonl").exists() else []
    test = summary.get("test", {})
    facts = {"task": "reinforcement", "algorithm": summary.get("algorithm"),
             "environment": summary.get("env"),
             "steps": summary.get("steps"),
             "steps per second": summary.get("steps_per_s"),
             "stopped": summary.get("stop_reason") or "ran all steps",
             "duration": f"{summary['duration_s']:.1f} s" if "duration_s" in summary else None}
    scores = html_table([{"": k, "value": v} for k, v in facts.items() if v is not None])
    scores += html_table([{"metric": k, "final evaluation": v} for k, v in test.items()])
    gif = path / "rollout.gif"
    if gif.exists():
        encoded = base64.b64encode(gif.read_bytes()).decode()
        rollout = f"<img alt=rollout src='data:image/gif;base64,{encoded}'>"
    else:
        rollout = missing("the environment does not render to an array, or rl.gif_frames is 0")
    body = {
        "summary": ("Summary", scores),
        "curves": ("Learning curve", return_curve(history)),
        "rollout": ("Rollout", rollout),
        "config": ("Config", f"<pre>{html.escape((path / 'config.yaml').read_text())}</pre>"),
    }
    return page(path.name, body)
