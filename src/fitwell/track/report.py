"""``report.html``: one self-contained page per run (inline SVG plots, no scripts or fonts from the
network) with the config, the audit, learning curves, the test split's confusion matrix, ROC,
precision-recall and reliability curves or residual plots, feature importance, the bias table
and the doctor's findings. ``page``, ``plot`` and ``new_figure`` also build other tasks' pages.

Why this module is long: one page, one section function each, sharing the SVG helpers.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitwell.errors import UserError
from fitwell.findings import tally
from fitwell.track.privacy_report import PRIVATE_PAGE, PRIVATE_ROWS, with_privacy

COLORS = {"info": "#2b7bb9", "warning": "#b8860b", "error": "#c0392b"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
.plots svg{width:480px;height:auto}.missing{color:#777;font-style:italic}
.sev{font-weight:600}pre{background:#f7f7f7;padding:.75rem;overflow:auto;font-size:.85rem}
nav a{margin-right:.8rem}.warning{color:#a40;font-weight:600}
"""

# Runs on load in a browser: records, for each section, how many plots it holds and whether
# each drew with a non-empty box; the headless-Chromium test reads it from the DOM.
CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var out = {};
  document.querySelectorAll('section').forEach(function (s) {
    var svgs = s.querySelectorAll('svg');
    var drawn = 0;
    svgs.forEach(function (g) {
      var b = g.getBoundingClientRect();
      if (b.width > 10 && b.height > 10) drawn++;
    });
    out[s.id] = {plots: svgs.length, drawn: drawn, rows: s.querySelectorAll('tr').length,
                 height: Math.round(s.getBoundingClientRect().height)};
  });
  document.body.setAttribute('data-rendered', JSON.stringify(out));
});
</script>
"""


def _svg(figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text as <text> elements (the page's fonts) rather than glyph outlines: 3x faster, smaller.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fitwell"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


# Inches of the report's 10-point text: a character of a tick label (digits are the widest), one
# line (an axis label, a title) with its padding.
CHAR_IN, LINE_IN = 0.085, 0.3


def new_figure(width: float = 5.0, height: float = 3.4, labels: Sequence[str] = (), below: Sequence[str] = (),
               right: float = 0.15):
    """A Matplotlib figure sized for the report (no pyplot state), its margins set from what the
    axes will show: ``labels`` are the left axis's tick labels when they are words (class names,
    column names), else numbers of up to 6 characters; ``below``, the bottom axis's words (the
    caller turns them upright); ``right`` inches for a colour bar's label.

    Matplotlib's constrained layout measured the same from a draw of the text -- three passes of
    every figure's text (two of layout, one to write it): 1.2 of the 1.85 s a small run's report
    took. The page's eight figures now take 0.6 s."""
    from matplotlib.figure import Figure

    left = 0.2 + LINE_IN + CHAR_IN * max([6, *(len(str(label)) for label in labels)])
    bottom = 0.12 + 2 * LINE_IN - 0.05 + CHAR_IN * max([0, *(len(str(b)) for b in below)])
    top = 0.12 + LINE_IN
    width, height = max(width, left + right + 3.0), max(height, bottom + top + 2.0)  # words widen it
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                           top=1 - top / height)
    return figure


def metric_panels(epochs: Sequence[float], metrics: dict[str, Sequence[float]]):
    """One panel a metric, stacked over a shared epoch axis, each on its own scale (an RMSE in the
    hundreds of thousands beside an R2 of 0.8 flattened the R2 on one axis); the metric's name is
    its panel's title."""
    panel = 1.0 if len(metrics) < 4 else 0.75  # inches of each panel's plot area
    gap = LINE_IN + 0.1  # room for the next panel's title
    figure = new_figure(5.0, 1.1 + panel * len(metrics) + gap * (len(metrics) - 1))
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    figure.subplots_adjust(hspace=gap / panel)
    for ax, (name, values) in zip(axes, metrics.items(), strict=True):
        ax.plot(epochs, values, marker=".")
        ax.set_title(short(name), fontsize="medium")
    axes[-1].set_xlabel("epoch")
    return figure


def short(label: Any, most: int = 30) -> str:
    """``label`` as text of at most ``most`` characters (a plot's tick label; tables keep it whole)."""
    text = str(label)
    return text if len(text) <= most else text[:most - 1] + "…"


def plot(title: str, figure) -> str:
    """A Matplotlib figure as an inline SVG with its caption."""
    return f"<figure>{_svg(figure)}<figcaption>{html.escape(title)}</figcaption></figure>"


def html_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return ""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if isinstance(value, float):
                cells.append(f"<td class=num>{value:.4g}</td>")
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                cells.append(f"<td class=num>{value}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def missing(text: str) -> str:
    """A greyed sentence saying what a section lacks."""
    return f"<p class=missing>{html.escape(text)}</p>"


def _findings(findings: list[dict]) -> str:
    rows = []
    for f in findings:
        color = COLORS[f["severity"]]
        rows.append(f"<tr><td class=sev style='color:{color}'>{f['severity']}</td>"
                    f"<td>{html.escape(f['check'])}</td><td>{html.escape(f.get('column') or '')}</td>"
                    f"<td>{html.escape(f['message'])}</td>"
                    f"<td><code>{html.escape(f.get('fix') or '')}</code></td></tr>")
    return ("<table><tr><th>severity</th><th>check</th><th>column</th><th>finding</th><th>fix</th></tr>"
            + "".join(rows) + "</table>")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# ---- sections ---------------------------------------------------------------------------------

def _curves(history: list[dict]) -> str:
    if not history:
        return missing("no per-epoch history in this run")
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    plots = []

    def series(key):
        return [row.get(key, np.nan) if row.get(key) is not None else np.nan for row in history]

    fig = new_figure()
    ax = fig.add_subplot()
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if any(np.isfinite(series(key))):
            ax.plot(epochs, series(key), marker=".", label=label)
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    plots.append(plot("training and validation loss", fig))
    metrics = [k for k in history[-1] if k.startswith("val_") and k != "val_loss"]
    if metrics:
        fig = metric_panels(epochs, {key[4:]: series(key) for key in metrics})
        plots.append(plot("validation metrics per epoch", fig))
    if "lr" in history[-1]:
        fig = new_figure()
        ax = fig.add_subplot()
        ax.plot(epochs, series("lr"), marker=".")
        ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
        plots.append(plot("learning rate in force each epoch", fig))
    measured = [row for row in history if row.get("grad_norm") is not None]  # every grad_norm_every steps
    if measured:
        fig = new_figure()
        ax = fig.add_subplot()
        at = [row.get("epoch", 0) for row in measured]
        ax.plot(at, [row["grad_norm"] for row in measured], marker=".", label="mean")
        ax.plot(at, [row.get("grad_norm_max", np.nan) for row in measured], marker=".", label="max")
        ax.set(xlabel="epoch", ylabel="gradient norm", title="gradient norm", yscale="log")
        ax.legend()
        plots.append(plot("total gradient norm before clipping", fig))
    return f"<div class=plots>{''.join(plots)}</div>"


def _classification(predictions: pd.DataFrame, classes: list, reliability: dict | None) -> str:
    from sklearn.metrics import auc, confusion_matrix, precision_recall_curve, roc_curve

    from fitwell.evaluate.metrics import reliability_curve

    labels = [str(c) for c in classes]
    truth = predictions["target"].astype(str).to_numpy()
    guess = predictions["prediction"].astype(str).to_numpy()
    proba = predictions[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
    plots = []
    matrix = confusion_matrix(truth, guess, labels=labels)
    ticks = [short(label) for label in labels]
    upright = max(len(tick) for tick in ticks) > 3  # words side by side would run into each other
    fig = new_figure(4.6, 4.0, ticks, ticks if upright else ())
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=ticks, yticklabels=ticks,
           xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    if upright:
        ax.tick_params(axis="x", labelrotation=90)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    plots.append(plot("confusion matrix on the test split", fig))
    positives = [1] if len(labels) == 2 else range(len(labels))
    roc, pr = new_figure(), new_figure()
    ax_roc, ax_pr = roc.add_subplot(), pr.add_subplot()
    for k in positives:
        is_k = (truth == labels[k]).astype(int)
        if is_k.min() == is_k.max():
            continue
        fpr, tpr, _ = roc_curve(is_k, proba[:, k])
        precision, recall, _ = precision_recall_curve(is_k, proba[:, k])
        ax_roc.plot(fpr, tpr, label=f"{labels[k]} (AUC {auc(fpr, tpr):.3f})")
        ax_pr.plot(recall, precision, label=f"{labels[k]} (area {auc(recall, precision):.3f})")
    ax_roc.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    ax_roc.legend(fontsize=8)
    ax_pr.legend(fontsize=8)
    plots += [plot("ROC curve, one-vs-rest per class" if len(labels) > 2 else "ROC curve", roc),
              plot("precision-recall curve", pr)]
    index = np.array([labels.index(t) if t in labels else -1 for t in truth])
    keep = index >= 0
    curves = {"model": reliability_curve(index[keep], proba[keep], 10)}
    if reliability and "uncalibrated" in reliability:
        curves = {"uncalibrated": reliability["uncalibrated"], "calibrated": reliability["calibrated"]}
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect")
    for name, curve in curves.items():
        points = [(b["confidence"], b["accuracy"]) for b in curve["bins"] if b["count"]]
        ax.plot(*zip(*points, strict=True), marker="o", label=f"{name} (ECE {curve['ece']:.3f})")
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability (test)")
    ax.legend(fontsize=8)
    plots.append(plot("reliability curve of the top-class probability", fig))
    return f"<div class=plots>{''.join(plots)}</div>"


def _regression(predictions: pd.DataFrame) -> str:
    truth = predictions["target"].to_numpy(dtype=float)
    guess = predictions["prediction"].to_numpy(dtype=float)
    residual = truth - guess
    plots = []
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter(truth, guess, s=10, alpha=0.7)
    low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=0.8)
    ax.set(xlabel="true", ylabel="predicted", title="predicted vs true (test)")
    plots.append(plot("predicted against true values", fig))
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter(guess, residual, s=10, alpha=0.7)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set(xlabel="predicted", ylabel="residual (true - predicted)", title="residuals (test)")
    plots.append(plot("residuals against predictions", fig))
    fig = new_figure()
    ax = fig.add_subplot()
    ax.hist(residual, bins=30)
    ax.set(xlabel="residual", ylabel="rows", title="residual distribution (test)")
    plots.append(plot("distribution of residuals", fig))
    return f"<div class=plots>{''.join(plots)}</div>"


def _importance(importance: dict | None) -> str:
    if not importance:
        return missing("not computed for this run; set explain.permutation: true to measure how much the"
                        " test score drops when each column is shuffled")
    rows = importance["importances"][:25]
    names = [short(r["column"]) for r in rows][::-1]
    fig = new_figure(5.5, max(2.0, 0.28 * len(rows) + 0.8), names)
    ax = fig.add_subplot()
    ax.barh(names, [r["mean"] for r in rows][::-1], xerr=[r["std"] for r in rows][::-1])
    ax.set(xlabel=f"drop in test {importance['metric']} when shuffled", title="permutation importance")
    return (f"<div class=plots>{plot('permutation importance on the test split', fig)}</div>"
            + html_table(rows, ["column", "mean", "std"]))


def _bias(fairness: dict | None) -> str:
    if not fairness:
        return missing("no bias audit: name the columns to compare groups by in data.sensitive")
    parts = []
    for column, table in fairness["columns"].items():
        parts.append(f"<h3>{html.escape(column)}</h3>")
        if table.get("note"):
            parts.append(f"<p>{html.escape(column)} {html.escape(table['note'])}</p>")
        parts.append(html_table(table["groups"]))
        differences = [{"measure": k, "value": v if v is not None else "fewer than two groups to judge"}
                       for k, v in table["differences"].items()]
        parts.append(html_table(differences))
        if table["small_groups"]:
            parts.append(f"<p><b>Too small to judge</b> (under {fairness['min_group_size']} test rows):"
                         f" {html.escape(', '.join(table['small_groups']))}</p>")
    return "".join(parts)


def _audit(audit: dict | None) -> str:
    if not audit:
        return missing("no audit in this run (audit.enabled is false)")
    counts = audit["counts"]
    columns = [{k: c.get(k, "") for k in ("name", "role", "kind", "missing", "distinct", "outliers_iqr",
                                          "outliers_z", "alone_score")} for c in audit["columns"]]
    return (f"<p>{audit['rows']} rows; {tally(counts)}.</p>"
            + (_findings(audit["findings"]) if audit["findings"] else "")
            + "<h3>Columns</h3>" + html_table(columns))


def _data_facts(data: dict, transfer: dict | None) -> dict:
    """What the model read besides the table, and what changed its training rows or its start:
    input blocks, synthetic rows, resampling, transferred weights."""
    facts = {}
    for block in (data.get("preprocessing") or {}).get("inputs", []):
        if block["kind"] == "image":
            facts["image input"] = "x".join(map(str, block["shape"])) + " (channels x height x width)"
        elif block["kind"] == "text":
            facts["text input"] = (f"{block['column']}: {block['tokenizer']}, {block['vocab_size']} tokens,"
                                   f" length {block['length']}")
        elif block["kind"] == "sequence":
            facts["sequence input"] = (f"{block['column']}: up to {block['length']} steps of"
                                       f" {block['features']} value(s)")
    resampled = data.get("resampled")
    if resampled:
        facts["resampled"] = (f"{resampled['method']}: training rows {resampled['rows_before']} ->"
                              f" {resampled['rows_after']}")
    synthetic = data.get("synthetic")
    if synthetic:
        facts["synthetic rows"] = (f"{synthetic['rows_added']} {synthetic['method']} rows added to the"
                                   f" {synthetic['rows_before']} training rows"
                                   " (validation and test untouched)")
    streamed = data.get("out_of_core")
    if streamed:
        facts["out of core"] = (f"{streamed['rows']:,} rows streamed into memory-mapped blocks; the audit,"
                                " the preprocessing statistics and this page's plots read a seeded sample"
                                f" of {streamed['sample_rows']:,} rows (the test metrics cover every"
                                " test row)")
    if transfer:
        from fitwell.engine.transfer import describe

        facts["transfer"] = describe(transfer)
    return facts


def render(run_path: str | Path) -> str:
    """The report page of a finished (or failed) run directory, as HTML text."""
    path = Path(run_path)
    if not (path / "config.yaml").exists():
        raise UserError(f"{path} is not a fitwell run directory (no config.yaml)")
    metrics = _read_json(path / "metrics.json") or {}
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()
               if line.strip()] if (path / "history.jsonl").exists() else []
    data = _read_json(path / "data.json") or {}
    doctor = _read_json(path / "doctor.json")
    task = metrics.get("task") or data.get("task", "?")
    test = metrics.get("test", {})
    summary = [html_table([{"metric": k, "test": v} for k, v in test.items()]) if test
               else missing("the test split was not scored (the run failed or was a tuning trial)")]
    facts = {"task": task, "rows": data.get("rows"), "split": metrics.get("split") or data.get("split"),
             "epochs": metrics.get("epochs"), "best epoch": metrics.get("best_epoch"),
             "stopped": metrics.get("stop_reason") or ("ran all epochs" if metrics else "did not finish"),
             "duration": f"{metrics['duration_s']:.1f} s" if "duration_s" in metrics else None}
    facts.update(_data_facts(data, _read_json(path / "transfer.json")))
    summary.insert(0, html_table([{"": k, "value": v} for k, v in facts.items() if v is not None]))
    summary[:0] = [PRIVATE_PAGE] if metrics.get("privacy") else []  # the page itself is not private
    if doctor is None:
        doctor_html = missing("the doctor has not examined this run")
    elif doctor["findings"]:
        doctor_html = _findings(doctor["findings"])
    else:
        doctor_html = "<p>No problems found in the curves and statistics.</p>"
    predictions_path = path / "test_predictions.csv"
    if predictions_path.exists():
        predictions = pd.read_csv(predictions_path)
        if task == "regression":
            evaluation = _regression(predictions)
        else:
            classes = data.get("classes") or sorted(predictions["target"].unique().tolist())
            evaluation = _classification(predictions, classes, _read_json(path / "reliability.json"))
    else:
        evaluation = missing("no test predictions in this run")
    config_text = (path / "config.yaml").read_text()
    body = {
        "summary": ("Summary", "".join(summary)),
        "doctor": ("Doctor's findings", doctor_html),
        "curves": ("Learning curves", _curves(history)),
        "evaluation": ("Test split", evaluation),
        "importance": ("Feature importance", _importance(_read_json(path / "importance.json"))),
        "bias": ("Bias audit", _bias(_read_json(path / "fairness.json"))),
        "audit": ("Data audit", (PRIVATE_ROWS if metrics.get("privacy") else "")
                  + _audit(_read_json(path / "audit.json"))),
        "config": ("Config", f"<pre>{html.escape(config_text)}</pre>"),
    }
    body = with_privacy(body, metrics.get("privacy"), _read_json(path / "privacy_audit.json"), html_table)
    return page(path.name, body)


def page(name: str, body: dict[str, tuple[str, str]]) -> str:
    """The report page of run ``name``: ``body`` maps a section id to (title, inner HTML)."""
    nav = "".join(f"<a href='#{key}'>{title}</a>" for key, (title, _) in body.items())
    sections = "".join(f"<section id={key}><h2>{title}</h2>{content}</section>"
                       for key, (title, content) in body.items())
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>fitwell run {html.escape(name)}</title><style>{CSS}</style></head>"
            f"<body><h1>{html.escape(name)}</h1><nav>{nav}</nav>"
            f"{sections}{CHECK_SCRIPT}</body></html>")



def write_report(run_path: str | Path, renderer=None) -> Path:
    """Write ``report.html`` into the run directory (atomically) and return its path;
    ``renderer(path) -> html`` replaces the supervised page (a reinforcement run's).

    Example:
        >>> write_report("runs/breast_cancer-20261123-193553-539")  # doctest: +SKIP
        PosixPath('runs/breast_cancer-20261123-193553-539/report.html')
    """
    import matplotlib

    path = Path(run_path)
    # Titles at the top of their axes: placed automatically, each was moved clear of the axes' own
    # text by measuring it -- 0.4 of a report's 1.5 s, for axes that put nothing above the plot.
    with matplotlib.rc_context({"axes.titley": 1.0}):
        text = render(path) if renderer is None else renderer(path)
    out = path / "report.html"
    tmp = out.with_name(".report.html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
