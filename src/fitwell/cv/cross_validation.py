"""``fitwell cv``: k-fold (optionally repeated) cross-validation of a config.

Each fold is a real run in ``runs/<name>/repeat-<r>/fold-<i>/``: the fold's held-out rows are its
test part, preprocessing is fitted on the fold's training rows only, and early stopping watches a
validation part taken from the training rows. The summary has every test metric's mean and
standard deviation over folds; out-of-fold predictions go to ``oof.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.config.load import ConfigLike, dump_config
from fitwell.errors import ConfigError
from fitwell.files import write_json, write_text, write_with
from fitwell.pipeline import train
from fitwell.run import config_stem, console_say, load_run_config, owned_folder
from fitwell.track.run_dir import default_run_name


def cross_validate(config: ConfigLike, overrides=None, *, folds: int = 5, repeats: int = 1,
                   data: pd.DataFrame | None = None, console=None) -> dict:
    """Run ``folds`` x ``repeats`` trainings; return (and save as cv.json) the summary.

    Example:
        >>> summary = cross_validate("examples/wine.yaml", folds=5)  # doctest: +SKIP
        >>> summary["mean"]["accuracy"], summary["std"]["accuracy"]  # doctest: +SKIP
    """
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds})")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {repeats})")
    say = console_say(console)
    stem = config_stem(config, "cv")
    config = load_run_config(config, overrides)
    name = config.track.name or default_run_name(f"{stem}-cv")
    folder = Path(config.track.runs_dir) / name
    with owned_folder(folder):
        write_text(folder / "config.yaml", dump_config(config))
        source = config.model_dump(mode="json", exclude={"tune"})
        rows, predictions = [], []
        for repeat in range(repeats):
            for fold in range(folds):
                run = train(source, {"track.runs_dir": str(folder / f"repeat-{repeat}"),
                                     "track.name": f"fold-{fold}", "track.overwrite": True,
                                     "train.progress": False},
                            data=data, cv=(folds, fold, repeat))
                rows.append({"repeat": repeat, "fold": fold, **run.metrics})
                oof = pd.read_csv(run.path / "test_predictions.csv")
                predictions.append(oof.assign(repeat=repeat, fold=fold))
                say(f"repeat {repeat} fold {fold}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in run.metrics.items()))
    table = pd.DataFrame(rows)
    metric_names = [c for c in table.columns if c not in ("repeat", "fold")]
    summary = {
        "folds": folds, "repeats": repeats, "task": run.task,
        "mean": {m: float(np.nanmean(table[m])) for m in metric_names},
        "std": {m: float(np.nanstd(table[m], ddof=1)) if len(table) > 1 else 0.0 for m in metric_names},
        "per_fold": rows, "folder": str(folder),
    }
    write_with(folder / "folds.csv", lambda tmp: table.to_csv(tmp, index=False))
    oof = pd.concat(predictions, ignore_index=True)
    write_with(folder / "oof.csv", lambda tmp: oof.to_csv(tmp, index=False))
    write_json(folder / "cv.json", summary)
    return summary
