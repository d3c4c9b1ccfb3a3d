"""timm image backbones (the optional ``fitwell[timm]`` extra): a backbone by name, weights from a
local file in timm's own names loaded by timm (classifier dropped, first convolution adapted to the
data's channels), frozen and unfrozen stage by stage, and reloaded from the run directory.

Skipped where timm is not installed (it needs torchvision, which CI's CPU torch lacks)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fitwell.data.sources import read_table
from fitwell.engine.transfer import layer_groups
from fitwell.errors import ConfigError
from fitwell.pipeline import train
from fitwell.serve.bundle import load_run

timm = pytest.importorskip("timm")

IMAGE = {"source": "sklearn:digits", "image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16}}


def small_backbone() -> str:
    return "test_resnet" if "test_resnet" in timm.list_models() else "resnet10t"


def config(tmp_path, **sections):
    base = {
        "data": IMAGE,
        "model": {"name": "timm", "backbone": small_backbone()},
        "train": {"epochs": 3, "lr": 3e-3, "batch_size": 64, "progress": False},
        "track": {"runs_dir": str(tmp_path), "report": False},
    }
    return {**base, **sections}


@pytest.fixture
def timm_file(tmp_path):
    """An RGB, 1000-class timm checkpoint as a user would have downloaded it (seeded, not trained)."""
    torch.manual_seed(0)
    source = timm.create_model(small_backbone(), pretrained=False)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    return path


def test_timm_weights_file_loaded_by_timm_and_backbone_frozen(tmp_path, timm_file):
    run = train(config(tmp_path, transfer={"weights": str(timm_file), "freeze": "backbone"}))
    report = json.loads((run.path / "transfer.json").read_text())
    assert report["loaded_by"] == "timm" and report["backbone_loaded_share"] == 1.0
    assert set(report["unused"]) == {"fc.weight", "fc.bias"}  # timm dropped the 1000-class classifier
    first = "conv1.0.weight" if "conv1.0.weight" in load_file(timm_file) else "conv1.weight"
    assert report["adapted"] == [f"backbone.{first}: 3 -> 1 input channels"]
    source = load_file(timm_file)[first]
    trained = load_file(run.path / "model.safetensors")[f"backbone.{first}"]
    # timm sums the RGB filters into one grey channel; the frozen backbone kept them
    assert torch.allclose(trained, source.sum(dim=1, keepdim=True), atol=1e-6)
    assert run.metrics["accuracy"] > 0.3  # the new head learned (chance 0.1)
    timm_file.unlink()  # the run no longer needs the file: rebuilt from model.json and its weights
    again = load_run(run.path)
    rows = read_table("sklearn:digits").head(20)
    assert again.predict_proba(rows).tolist() == run.predict_proba(rows).tolist()


def test_gradual_unfreezing_goes_stage_by_stage(tmp_path):
    run = train(config(tmp_path, train={"epochs": 1, "progress": False}))
    groups = layer_groups(run.model)
    assert len(groups) == 6  # conv1, bn1, layer1..layer4 (the head is not a group)
    in_groups = sum(p.numel() for g in groups for p in g)
    assert in_groups == sum(p.numel() for p in run.model.backbone.parameters())


def test_foreign_weights_and_unknown_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"transfer\.weights: .*do not fit timm's .*Missing key"):
        path = tmp_path / "other.safetensors"
        save_file({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, path)
        train(config(tmp_path, transfer={"weights": str(path)}))
    with pytest.raises(ConfigError, match=r"model\.backbone: .*no_such_net"):
        train(config(tmp_path, model={"name": "timm", "backbone": "no_such_net"}))
