"""Transfer learning: weights from an earlier run or a file, matched by name and shape and
reported; frozen backbones, gradual unfreezing, backbone/head learning rates; and the digits
0-4 -> 5-9 experiment (10% of the training rows) against training from scratch."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fitwell.data.sources import read_table
from fitwell.engine.transfer import discriminative_groups, frozen_groups, load_matching, read_weights
from fitwell.errors import ConfigError
from fitwell.pipeline import train
from fitwell.track.report import render

IMAGE = {"pixels": "pixel_*", "size": [8, 8], "max_value": 16}


def digits_halves():
    frame = read_table("sklearn:digits")
    return frame[frame.target < 5].reset_index(drop=True), frame[frame.target >= 5].reset_index(drop=True)


def config(runs, **extra):
    base = {
        "data": {"image": IMAGE},
        "model": {"name": "cnn", "channels": [32, 64]},
        "train": {
            "epochs": 30,
            "lr": 3e-3,
            "batch_size": 32,
            "progress": False,
            "early_stopping": {"patience": 8},
        },
        "track": {"runs_dir": str(runs), "report": False},
    }
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    first, _ = digits_halves()
    return train(config(tmp_path_factory.mktemp("pre")), data=first)


def test_pretrained_digits_0_to_4_beat_scratch_on_5_to_9(tmp_path, pretrained):
    _, second = digits_halves()
    few = {"train": 0.07, "val": 0.13, "test": 0.80}  # 10% of the rows a 70% training split would hold
    scratch, transfer = [], []
    for seed in (0, 1, 2):
        scratch.append(train(config(tmp_path, split=few, seed=seed), data=second).metrics["accuracy"])
        run = train(
            config(tmp_path, split=few, seed=seed, transfer={"weights": str(pretrained.path)}), data=second
        )
        transfer.append(run.metrics["accuracy"])
    report = json.loads((run.path / "transfer.json").read_text())
    assert report["backbone_loaded_share"] == 1.0 and report["new_head"] == ["head.weight", "head.bias"]
    assert run.summary["split"]["train"] == 63
    # measured: scratch 0.9665 / 0.9791 / 0.9665, transfer 0.9749 / 0.9833 / 0.9777
    assert np.mean(transfer) > np.mean(scratch) + 0.003, (scratch, transfer)


def test_frozen_backbone_stays_fixed_and_unfreezes_on_schedule(tmp_path, pretrained):
    _, second = digits_halves()
    source = load_file(pretrained.path / "model.safetensors")
    frozen = train(
        config(
            tmp_path,
            train={"epochs": 3, "lr": 3e-3, "batch_size": 64, "progress": False},
            transfer={"weights": str(pretrained.path), "freeze": "backbone"},
        ),
        data=second,
    )
    after = load_file(frozen.path / "model.safetensors")
    conv = "stages.0.0.weight"
    assert torch.equal(after[conv], source[conv])  # the backbone did not move
    page = render(frozen.path).replace("\n", "")
    loaded = len(json.loads((frozen.path / "transfer.json").read_text())["loaded"])
    assert f"transfer</td><td>loaded {loaded} tensors from {pretrained.path} (100% of the backbone)" in page
    assert frozen.metrics["accuracy"] >= 0.35  # the new head learned (chance 0.2; seen 0.455)
    assert [frozen_groups(e, 3, "backbone", 2) for e in range(7)] == [3, 3, 2, 2, 1, 1, 0]
    gradual = train(
        config(
            tmp_path,
            train={
                "epochs": 4,
                "lr": 3e-3,
                "batch_size": 64,
                "progress": False,
                "early_stopping": {"enabled": False},
            },
            transfer={"weights": str(pretrained.path), "freeze": "backbone", "unfreeze_every": 2},
        ),
        data=second,
    )
    moved = load_file(gradual.path / "model.safetensors")
    assert not torch.equal(moved["stages.1.0.weight"], source["stages.1.0.weight"])  # the top stage thawed


def test_backbone_and_head_learning_rates():
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(3, 4))
    model.add_module("head", torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW([{"params": list(model.parameters()), "weight_decay": 0.0}], lr=0.01)
    discriminative_groups(optimizer, model, 0.1)
    rates = sorted(group["lr"] for group in optimizer.param_groups)
    assert rates == pytest.approx([0.001, 0.01])


def test_weights_files_and_mismatch_report(tmp_path):
    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pt")
    weights = read_weights(tmp_path / "w.pt")  # nested checkpoint layout and DDP prefixes
    assert set(weights) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5))
    report = load_matching(target, weights)
    assert report["loaded"] == ["0.weight", "0.bias"]
    assert report["shape_mismatch"] == {"1.weight": [[2, 4], [5, 4]], "1.bias": [[2], [5]]}
    assert torch.equal(target[0].weight, source[0].weight)
    with pytest.raises(ConfigError, match="transfer.weights: .*nothing.pt does not exist"):
        read_weights(tmp_path / "nothing.pt")


def test_poorly_matching_weights_are_refused(tmp_path, pretrained):
    _, second = digits_halves()
    with pytest.raises(ConfigError, match=r"only 0% of the backbone's tensors matched.*same model family"):
        train(
            config(
                tmp_path,
                model={"name": "resnet", "channels": [8]},
                transfer={"weights": str(pretrained.path)},
            ),
            data=second,
        )
