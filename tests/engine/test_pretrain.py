"""pretrain: a supervised run's network first learns to rebuild the rows' numbers, unlabelled rows
included, then fine-tunes from that backbone."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import make_classification

import fitwell
from fitwell.errors import ConfigError


@pytest.fixture
def few_labels(tmp_path):
    X, y = make_classification(n_samples=3000, n_features=12, n_informative=6, n_redundant=4, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(12)]).assign(label=y)
    unlabelled = tmp_path / "unlabelled.csv"
    frame.iloc[300:].drop(columns="label").to_csv(unlabelled, index=False)
    config = {"data": {"target": "label"}, "model": {"hidden_sizes": [32, 32], "dropout": 0.0},
              "train": {"epochs": 10, "progress": False},
              "track": {"runs_dir": str(tmp_path), "report": False}}
    return frame.iloc[:300], unlabelled, config


def test_pretraining_learns_the_numbers_and_starts_the_supervised_network(few_labels):
    labelled, unlabelled, config = few_labels
    pretrain = {"source": str(unlabelled), "epochs": 15}
    run = fitwell.train({**config, "pretrain": pretrain, "transfer": {"freeze": "backbone"}},
                        {"track.name": "pre"}, data=labelled)
    record = json.loads((run.path / "pretrain.json").read_text())
    assert record["unlabelled_rows"] == 2700 and record["rows"] == 2700 + run.summary["split"]["train"]
    assert record["last_loss"] < 0.8 * record["first_loss"]  # it learned to fill the masked numbers
    assert record["backbone_loaded_share"] == 1.0 and record["new_head"] == ["head.weight", "head.bias"]
    # the backbone stayed frozen, so the supervised model's hidden layers are the pretrained ones
    pretrained = load_file(run.path / "pretrain" / "weights.safetensors")
    final = load_file(run.path / "model.safetensors")
    for name in ("body.0.weight", "body.2.weight"):
        assert torch.equal(pretrained[name], final[name])
    assert pretrained["head.weight"].shape[0] == 12  # the pretraining head rebuilt the 12 numbers
    assert final["head.weight"].shape[0] == 1  # and the supervised head is new


def test_unlabelled_rows_never_fit_the_preprocessing(few_labels):
    labelled, unlabelled, config = few_labels
    plain = fitwell.train(config, {"track.name": "plain", "train.epochs": 1}, data=labelled)
    pre = fitwell.train({**config, "pretrain": {"source": str(unlabelled), "epochs": 2}},
                        {"track.name": "pre", "train.epochs": 1}, data=labelled)
    scale = [r.preprocessor.numeric_.named_transformers_["numeric"]["scale"].mean_ for r in (plain, pre)]
    assert np.array_equal(scale[0], scale[1])


@pytest.mark.parametrize("extra, message", [
    ({"transfer": {"weights": "w.safetensors"}}, r"cannot go with transfer\.weights"),
    ({"task": "clustering", "data": {}}, r"cannot go with task clustering"),
])
def test_pretraining_refuses_what_it_cannot_go_with(few_labels, extra, message):
    labelled, unlabelled, config = few_labels
    with pytest.raises(ConfigError, match=message):
        fitwell.train({**config, "pretrain": {"epochs": 1}, **extra}, data=labelled)


def test_the_shipped_pretraining_example_runs(tmp_path, capsys):
    from fitwell.cli import run_cli

    code = run_cli(["train", "examples/patients_pretrain.yaml", f"track.runs_dir={tmp_path}", "track.name=ex",
                    "pretrain.epochs=2", "train.epochs=3", "train.progress=false", "track.report=false"])
    assert code == 0, capsys.readouterr().out
    record = json.loads((tmp_path / "ex" / "pretrain.json").read_text())
    assert record["unlabelled_rows"] == 24_000 and record["backbone_loaded_share"] == 1.0
