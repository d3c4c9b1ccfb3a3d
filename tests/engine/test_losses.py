import numpy as np
import pytest
import torch

import fitwell
from fitwell.engine.losses import build_loss
from fitwell.errors import ConfigError


def test_focal_binary_by_hand():
    logits = torch.tensor([[2.0], [-1.0], [0.3]])
    target = torch.tensor([1, 1, 0])
    p = torch.sigmoid(logits.squeeze())
    pt = torch.stack([p[0], p[1], 1 - p[2]])
    expected = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    assert torch.allclose(build_loss("focal", "binary", focal_gamma=2.0)(logits, target), expected)


def test_focal_multiclass_with_class_weights_by_hand():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    weights = torch.tensor([1.0, 1.0, 3.0])
    p = torch.softmax(logits, dim=1)
    pt = torch.stack([p[0, 0], p[1, 2]])
    per_row = -(1 - pt) ** 1.5 * torch.log(pt)
    expected = (per_row * torch.tensor([1.0, 3.0])).sum() / 4.0
    loss = build_loss("focal", "multiclass", class_weights=weights, focal_gamma=1.5)
    assert torch.allclose(loss(logits, target), expected)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(8, 4), torch.randint(0, 4, (8,))
    assert torch.allclose(build_loss("focal", "multiclass", focal_gamma=0.0)(logits, target),
                          torch.nn.functional.cross_entropy(logits, target), atol=1e-6)


@pytest.mark.parametrize("name, task", [
    ("cross_entropy", "multiclass"), ("binary_cross_entropy", "binary"), ("mse", "regression"),
    ("mae", "regression"), ("huber", "regression"), ("focal", "binary"),
])
def test_sample_weights_by_hand(name, task):
    torch.manual_seed(0)
    out = torch.randn(5, 3 if task == "multiclass" else 1)
    target = (torch.randint(0, 3 if task == "multiclass" else 2, (5,)) if task != "regression"
              else torch.randn(5))
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0])
    loss = build_loss(name, task)
    per_row = torch.stack([loss(out[i:i + 1], target[i:i + 1]) for i in range(5)])
    assert torch.allclose(loss(out, target, weight), (per_row * weight).sum() / weight.sum(), atol=1e-6)
    ones = torch.ones(5)
    assert torch.allclose(loss(out, target, ones), loss(out, target), atol=1e-6)


def test_class_weighted_cross_entropy_matches_torch():
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(build_loss("auto", "multiclass", class_weights=weights)(logits, target),
                          torch.nn.functional.cross_entropy(logits, target, weight=weights))


def test_weight_column_from_config(tmp_path, mixed_frame):
    frame = mixed_frame.copy()
    frame["w"] = np.where(frame["label"] == 1, 3.0, 1.0)
    run = fitwell.train({"data": {"target": "label", "weight_column": "w"},
                         "track": {"runs_dir": str(tmp_path)}, "train": {"epochs": 5, "progress": False}},
                        data=frame)
    assert "w" not in run.preprocessor.plan.inputs
    frame.loc[4, "w"] = -1
    with pytest.raises(fitwell.DataError, match=r"data\.weight_column 'w': row 4 holds -1\.0"):
        fitwell.train({"data": {"target": "label", "weight_column": "w"},
                       "track": {"runs_dir": str(tmp_path)}}, data=frame)


def test_custom_loss_from_config(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                         "train": {"loss": "tests.engine.plugins:squared_hinge", "epochs": 6,
                                   "progress": False, "early_stopping": {"monitor": "val_accuracy"}}},
                        data=mixed_frame)
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    with pytest.raises(ConfigError, match=r"train\.loss: module 'tests\.engine\.plugins' has no 'nope'"):
        fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                       "train": {"loss": "tests.engine.plugins:nope"}}, data=mixed_frame)


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.loss: unknown loss 'hinge'"):
        fitwell.load_config({"train": {"loss": "hinge"}})
