"""``report.html`` of a clustering, anomaly or embedding run: the scores, the choice of k, a 2-D
map of the scored rows (PCA fitted on the training rows) and the config."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from fitwell.track.report import html_table, missing, new_figure, page, plot


def k_search(fit: dict) -> str:
    scores = fit.get("k_scores")
    if not scores:
        return missing("k was given (or found by HDBSCAN), not searched")
    figure = new_figure(4.6, 3.2)
    axes = figure.subplots()
    ks = sorted(int(k) for k in scores)
    axes.plot(ks, [scores[str(k)] if str(k) in scores else scores[k] for k in ks], marker="o")
    axes.axvline(fit["k_chosen"], color="#c0392b", linestyle="--", label=f"chosen k = {fit['k_chosen']}")
    axes.set_xlabel("k")
    axes.set_ylabel(fit.get("k_criterion", "score"))
    axes.legend(loc="best")
    return plot(f"k by {fit.get('k_criterion')} ({'lowest' if fit.get('k_criterion') == 'bic' else 'highest'}"
                " wins)", figure)


def rows_map(table: pd.DataFrame, task: str, method: str = "pca") -> str:
    figure = new_figure(5.2, 4.0, right=0.8 if task == "anomaly" else 0.15)  # the colour bar's ticks, label
    axes = figure.subplots()
    if task == "clustering":
        for cluster, part in table.groupby("cluster"):
            name = "noise" if cluster < 0 else f"cluster {cluster}"
            axes.scatter(part["map_x"], part["map_y"], s=8, label=name)
        if table["cluster"].nunique() <= 12:
            axes.legend(loc="best", fontsize=7, markerscale=1.5)
    elif task == "anomaly":
        shown = axes.scatter(table["map_x"], table["map_y"], c=table["anomaly_score"], s=8, cmap="viridis")
        flagged = table[table["anomaly"].astype(bool)]
        axes.scatter(flagged["map_x"], flagged["map_y"], s=30, facecolors="none", edgecolors="#c0392b",
                     label="above the threshold")
        figure.colorbar(shown, ax=axes, label="anomaly score")
        axes.legend(loc="best", fontsize=7)
    else:
        axes.scatter(table["map_x"], table["map_y"], s=8)
    axes.set_xlabel(f"{method} 1")
    axes.set_ylabel(f"{method} 2")
    return plot(f"The scored rows on a 2-D {method} map fitted on the training rows", figure)


def render_unsupervised_run(path: str | Path) -> str:
    """The report page of a finished unsupervised run directory."""
    path = Path(path)
    summary = json.loads((path / "metrics.json").read_text())
    task, fit = summary["task"], summary.get("fit", {})
    facts = {"task": task, "method": fit.get("method"), "rows": summary.get("rows"),
             "features": summary.get("features"), "scored on": f"the {summary.get('scored_on')} rows",
             "duration": f"{summary['duration_s']:.1f} s" if "duration_s" in summary else None}
    tables = html_table([{"": k, "value": v} for k, v in facts.items() if v is not None])
    names = list(dict.fromkeys([*summary.get("test", {}), *summary.get("train", {})]))
    tables += html_table([{"metric": n, summary.get("scored_on", "test"): summary["test"].get(n, ""),
                           "train": summary.get("train", {}).get(n, "")} for n in names])
    predictions = path / "test_predictions.csv"
    table = pd.read_csv(predictions) if predictions.exists() else None
    method = "UMAP" if summary.get("map") == "umap" else "PCA"
    plots = [rows_map(table, task, method)] if table is not None else []
    if task == "clustering":
        plots.insert(0, k_search(fit))
        sizes = table["cluster"].value_counts().sort_index() if table is not None else pd.Series(dtype=int)
        tables += html_table([{"cluster": int(c), "rows": int(n)} for c, n in sizes.items()])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in summary.get("notes", []))
    body = {
        "summary": ("Summary", tables + notes),
        "map": ("Map", f"<div class=plots>{''.join(plots)}</div>"),
        "config": ("Config", f"<pre>{html.escape((path / 'config.yaml').read_text())}</pre>"),
    }
    return page(path.name, body)
