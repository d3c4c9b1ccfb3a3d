"""Stacking an MLP with LightGBM scores at least as well as the better of the two, in five-fold
cross-validation, on breast cancer and diabetes. It does not on wine (0.9719 against LightGBM's
0.9775: one row of 178) nor on iris; the margins everywhere are a few rows, so this guards the
measured figures in docs/benchmarks.md ("Ensembles") rather than proving a rule."""

import numpy as np
import pytest

from fitwell.data.sources import read_table
from fitwell.ensemble import fit_ensemble

METRIC = {"breast_cancer": "roc_auc", "diabetes": "r2"}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(METRIC))
def test_stacking_an_mlp_and_lightgbm_matches_or_beats_the_better_member(tmp_path, dataset):
    frame = read_table(f"sklearn:{dataset}")
    metric = METRIC[dataset]
    scores = {"mlp": [], "lightgbm": [], "stacking": []}
    for fold in range(5):
        run = fit_ensemble({"data": {"target": "target"}, "train": {"progress": False},
                            "track": {"runs_dir": str(tmp_path), "name": f"fold-{fold}", "report": False},
                            "ensemble": {"folds": 5, "method": "stacking", "members": [
                                {"name": "mlp"}, {"name": "lightgbm", "kind": "lightgbm"}]}},
                           data=frame, cv=(5, fold, 0))
        for member in ("mlp", "lightgbm"):
            scores[member].append(run.summary["members"][member]["test"][metric])
        scores["stacking"].append(run.metrics[metric])
    means = {name: float(np.mean(values)) for name, values in scores.items()}
    assert means["stacking"] >= max(means["mlp"], means["lightgbm"]), means
