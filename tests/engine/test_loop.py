import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fitwell
from fitwell.engine.callbacks import Callback, EarlyStopping, is_improvement
from fitwell.engine.checkpoint import LAST, PREVIOUS, load_checkpoint, rotate_and_write
from fitwell.engine.losses import BinaryCrossEntropy, build_loss
from fitwell.engine.optim import parameter_groups
from tests.conftest import fast


@pytest.mark.parametrize("value, best, mode, delta, expected", [
    (0.5, None, "min", 0.0, True),
    (0.5, 0.6, "min", 0.0, True),
    (0.59, 0.6, "min", 0.05, False),
    (0.7, 0.6, "max", 0.0, True),
    (float("nan"), 0.6, "max", 0.0, False),
])
def test_is_improvement(value, best, mode, delta, expected):
    assert is_improvement(value, best, mode, delta) is expected


def test_loss_falls_and_history_is_logged(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"early_stopping": {"enabled": False}}},
                        fast(**{"train.epochs": 15}), data=mixed_frame)
    losses = [row["train_loss"] for row in run.history]
    assert len(losses) == 15 and losses[-1] < 0.6 * losses[0]
    assert {"val_loss", "val_accuracy", "val_roc_auc", "lr"} <= set(run.history[0])
    assert run.metrics["accuracy"] > 0.8


class StopAt(Callback):
    def __init__(self, epoch, error=KeyboardInterrupt):
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, trainer, state):
        if state.epoch == self.epoch:
            raise self.error("interrupted by the test")


def test_early_stopping_restores_the_best_weights(tmp_path, mixed_frame):
    seen = {}

    class Spy(Callback):
        def on_fit_end(self, trainer, state):
            seen["weights"] = {k: v.clone() for k, v in trainer.module.state_dict().items()}

        order = 10  # after EarlyStopping restored the weights

    config = {"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
              "model": {"hidden_sizes": [256, 256], "dropout": 0.0},
              "train": {"lr": 0.01, "epochs": 60, "early_stopping": {"patience": 3}}}
    run = fitwell.train(config, {"train.progress": False}, data=mixed_frame, callbacks=[Spy()])
    val = [row["val_loss"] for row in run.history]
    best = int(np.argmin(val)) + 1
    assert len(val) == best + 3  # stopped after `patience` epochs without gain
    saved = json_load(run.dir.metrics)
    assert saved["best_epoch"] == best and "did not improve" in saved["stop_reason"]
    on_disk = load_file(run.dir.model)
    assert all(torch.equal(on_disk[k], seen["weights"][k]) for k in on_disk)


def json_load(path):
    import json

    return json.loads(path.read_text())


def test_same_seed_same_metrics_other_seed_differs(tmp_path, mixed_frame):
    def metrics(seed):
        return fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                              "seed": seed}, fast(), data=mixed_frame).metrics

    assert metrics(0) == metrics(0)
    assert metrics(0) != metrics(1)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, mixed_frame):
    config = {"data": {"target": "label"}, "train": {"epochs": 6, "early_stopping": {"patience": 2}}}
    whole = fitwell.train(config, {"track.runs_dir": str(tmp_path / "a"), "train.progress": False},
                          data=mixed_frame)
    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, {"track.runs_dir": str(tmp_path / "b"), "track.name": "r",
                               "train.progress": False}, data=mixed_frame, callbacks=[StopAt(4)])
    assert not (tmp_path / "b" / "r" / "metrics.json").exists()
    resumed = fitwell.train(resume=tmp_path / "b" / "r", data=mixed_frame)
    assert resumed.metrics == whole.metrics
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    a, b = load_file(whole.dir.model), load_file(resumed.dir.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_last_checkpoint_falls_back_to_previous(tmp_path):
    rotate_and_write({"model": {"w": torch.ones(2)}, "n": 1}, tmp_path)
    rotate_and_write({"model": {"w": torch.zeros(2)}, "n": 2}, tmp_path)
    assert load_checkpoint(tmp_path)[0]["n"] == 2
    data = (tmp_path / LAST).read_bytes()
    (tmp_path / LAST).write_bytes(data[: len(data) // 2])  # truncated by a crash or a full disk
    with pytest.warns(UserWarning, match="unreadable"):
        ckpt, path = load_checkpoint(tmp_path)
    assert ckpt["n"] == 1 and path.name == PREVIOUS
    assert not list(tmp_path.glob("*.tmp"))


def test_weighted_binary_cross_entropy_by_hand():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    target = torch.tensor([1, 0, 0])
    weights = torch.tensor([1.0, 3.0])
    p = torch.sigmoid(logits.squeeze())
    per_row = -torch.stack([torch.log(p[0]), torch.log(1 - p[1]), torch.log(1 - p[2])])
    expected = (per_row * torch.tensor([3.0, 1.0, 1.0])).sum() / 5.0
    assert torch.allclose(BinaryCrossEntropy(weights)(logits, target), expected)


def test_loss_must_fit_the_task():
    from fitwell.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.loss: 'mse' does not fit a binary task"):
        build_loss("mse", "binary")
    assert build_loss("huber", "regression", huber_delta=2.0).delta == 2.0


def test_biases_and_norms_are_kept_out_of_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and len(decay["params"]) == 2
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4


def test_early_stopping_state_survives_a_round_trip():
    stop = EarlyStopping(patience=3)
    stop.on_fit_start(None, None)
    stop.best, stop.wait = 0.3, 2
    other = EarlyStopping(patience=3)
    other.on_fit_start(None, None)
    other.load_state_dict(stop.state_dict())
    assert (other.best, other.wait) == (0.3, 2)


def test_no_validation_split_trains_on_train_loss(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "split": {"train": 0.85, "val": 0.0, "test": 0.15},
                         "train": {"epochs": 4, "progress": False,
                                   "early_stopping": {"monitor": "train_loss"}}}, data=mixed_frame)
    assert run.summary["split"]["val"] == 0 and "val_loss" not in run.history[0]
    assert run.metrics["accuracy"] > 0.7
