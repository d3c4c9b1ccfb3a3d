"""report.html renders in headless Chromium (every section, every plot drawn), needs no network,
and `fitwell runs` lists and compares runs."""

import html
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from fitwell.cli import run_cli
from fitwell.pipeline import train

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (.ci/run installs it)")


def rendered(page, tmp_path) -> dict:
    """Load the page in headless Chromium and read what its load-time check recorded."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'data-rendered="([^"]*)"', out)
    assert found, f"the page's check did not run; DOM starts: {out[:300]}"
    return json.loads(html.unescape(found.group(1)))


def assert_self_contained(text: str) -> None:
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=[\"']?https?:", text)
    assert "@import" not in text and "url(http" not in text


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    frame = pd.read_csv(load_breast_cancer_csv(folder))
    frame["site"] = ["north", "south"] * (len(frame) // 2) + ["north"] * (len(frame) % 2)
    return train({"data": {"target": "target", "sensitive": ["site"], "drop": ["site"]},
                  "train": {"epochs": 6, "progress": False}, "explain": {"permutation": True, "repeats": 2},
                  "track": {"runs_dir": str(folder / "runs"), "name": "classify"}}, data=frame)


def load_breast_cancer_csv(folder):
    from sklearn.datasets import load_breast_cancer

    path = folder / "bc.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


@needs_chromium
def test_classification_report_renders_every_section(classification_run, tmp_path):
    page = classification_run.path / "report.html"
    text = page.read_text()
    assert_self_contained(text)
    sections = rendered(page, tmp_path)
    assert list(sections) == ["summary", "doctor", "curves", "evaluation", "importance", "bias", "audit",
                              "config"]
    assert sections["curves"]["plots"] == sections["curves"]["drawn"] == 4  # loss, metrics, lr, grad norm
    assert sections["evaluation"]["plots"] == sections["evaluation"]["drawn"] == 4  # confusion, ROC, PR, rel.
    assert sections["importance"]["drawn"] == 1 and sections["importance"]["rows"] > 10
    assert sections["bias"]["rows"] >= 3 and sections["audit"]["rows"] > 30
    assert sections["summary"]["rows"] > 5 and sections["config"]["height"] > 100
    assert "demographic_parity_difference" in text and "confusion matrix" in text


@needs_chromium
def test_regression_report_has_residual_plots(tmp_path):
    frame = load_diabetes(as_frame=True).frame
    run = train({"data": {"target": "target"}, "train": {"epochs": 4, "progress": False},
                 "track": {"runs_dir": str(tmp_path / "runs")}}, data=frame)
    sections = rendered(run.path / "report.html", tmp_path)
    assert sections["evaluation"]["plots"] == sections["evaluation"]["drawn"] == 3
    text = (run.path / "report.html").read_text()
    assert "residuals (test)" in text and "explain.permutation: true" in text  # how to get importance


@pytest.mark.parametrize("labels", [[], ["petal width (cm)", "a column named at length, its unit in words"],
                                    ["setosa", "versicolor variety"]])
def test_every_label_of_a_plot_lies_inside_its_figure(labels):
    """The report sets its plots' margins from their labels (Matplotlib's constrained layout drew
    every figure three times to measure them): a long column name, class names turned upright
    under a confusion matrix, numbers of seven characters all stay inside the figure."""
    from fitwell.track.report import new_figure, short

    ticks = [short(label) for label in labels]
    figure = new_figure(5.0, 3.4, ticks, ticks)
    axes = figure.add_subplot()
    if ticks:
        axes.barh(ticks, range(1, len(ticks) + 1))
        axes.set_xticks(range(len(ticks)), ticks)
        axes.tick_params(axis="x", labelrotation=90)
    else:
        axes.plot([1, 2, 3], [0.00096, 0.00104, 0.001])
    axes.set(xlabel="drop in test accuracy when shuffled", ylabel="learning rate", title="a title")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    drawn = figure.get_tightbbox(FigureCanvasAgg(figure).get_renderer())  # inches, what is drawn
    width, height = figure.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, drawn
    assert drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01, (drawn, width, height)


def test_fitwell_report_rewrites_the_page(classification_run, capsys):
    page = classification_run.path / "report.html"
    page.unlink()
    assert run_cli(["report", str(classification_run.path)]) == 0
    assert page.exists() and str(page) in capsys.readouterr().out
    assert run_cli(["report", str(classification_run.path / "nope")]) == 2


def test_runs_table_and_comparison(tmp_path, capsys):
    runs = tmp_path / "runs"
    for name, lr in (("slow", 1e-4), ("fast", 3e-3)):
        train({"data": {"source": "sklearn:wine"}, "train": {"epochs": 3, "lr": lr, "progress": False},
               "track": {"runs_dir": str(runs), "name": name, "report": False}})
    capsys.readouterr()
    assert run_cli(["runs", "--dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "slow" in out and "fast" in out and "accuracy" in out and "completed" in out
    assert run_cli(["runs", "compare", str(runs / "slow"), str(runs / "fast")]) == 0
    out = capsys.readouterr().out
    assert "train.lr" in out and "0.0001" in out and "0.003" in out
    assert "train.epochs" not in out  # same in both: only differences by default
    assert "test accuracy" in out and "difference" in out
    assert run_cli(["runs", "--dir", str(tmp_path / "missing")]) == 2


def test_each_validation_metric_is_read_on_its_own_scale():
    """An RMSE in the hundreds of thousands and an R2 near 0.8 each get a panel whose axis spans
    their own values (on one axis the R2 was a flat line at zero), all inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from fitwell.track.report import metric_panels

    epochs = list(range(1, 9))
    metrics = {"rmse": [4e5 - 2e4 * e for e in epochs], "mae": [3e5 - 1e4 * e for e in epochs],
               "r2": [0.5 + 0.03 * e for e in epochs], "a_metric_with_a_long_name_indeed_yes": [0.1] * 8}
    figure = metric_panels(epochs, metrics)
    panels = figure.axes
    assert [ax.get_title() for ax in panels[:3]] == ["rmse", "mae", "r2"]
    low, high = panels[2].get_ylim()
    assert 0.4 < low < 0.53 and 0.74 < high < 0.9  # r2's own range, not 0 to 400,000
    assert panels[0].get_ylim()[0] > 1e5
    drawn = figure.get_tightbbox(FigureCanvasAgg(figure).get_renderer())
    width, height = figure.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01
    heights = [ax.get_tightbbox(FigureCanvasAgg(figure).get_renderer()) for ax in panels]
    for upper, lower in zip(heights, heights[1:], strict=False):
        assert lower.y1 <= upper.y0 + 1, (upper, lower)  # titles and ticks do not overlap
