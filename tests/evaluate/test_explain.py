import json

import fitwell


def test_permutation_importance_ranks_the_signal_columns_first(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                         "train": {"epochs": 20, "progress": False},
                         "explain": {"permutation": True, "repeats": 3}}, data=mixed_frame)
    found = json.loads((run.path / "importance.json").read_text())
    ranked = [row["column"] for row in found["importances"]]
    assert found["metric"] == "roc_auc" and found["rows"] == run.summary["split"]["test"]
    assert set(ranked[:2]) == {"x1", "x2"}  # the label is 2*x1 - 1.5*x2 + noise (+ color)
    by_column = {row["column"]: row["mean"] for row in found["importances"]}
    assert by_column["x1"] > 0.05 and abs(by_column["city"]) < 0.05  # city carries no signal
