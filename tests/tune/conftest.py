import pytest
import yaml


@pytest.fixture
def tune_config(tmp_path, mixed_frame):
    """Write the mixed table to CSV and return a function making a tune config file."""
    csv = tmp_path / "data.csv"
    mixed_frame.to_csv(csv, index=False)

    def make(tune: dict, train: dict | None = None, name: str = "study.yaml"):
        config = {
            "data": {"source": str(csv), "target": "label"},
            "model": {"hidden_sizes": [16]},
            "train": {"epochs": 6, "batch_size": 32, "progress": False, **(train or {})},
            "track": {"runs_dir": str(tmp_path / "runs")},
            "tune": {"trials": 4, "sampler": "random", "pruner": "none",
                     "space": {"train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
                     **tune},
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return make
