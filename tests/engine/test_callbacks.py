import json
import math

import pytest
import torch

import fitwell
from fitwell.cli import run_cli
from fitwell.engine.callbacks import (
    Budget,
    Callback,
    CheckpointWriter,
    GradientNormMonitor,
    ModelCheckpoint,
    overrides,
)
from fitwell.engine.checkpoint import load_checkpoint
from fitwell.errors import ConfigError, TrainingFailed
from tests.conftest import fast
from tests.engine.conftest import synthetic
from tests.engine.plugins import CountEpochs


def base(tmp_path, **train):
    return {"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
            "train": {"progress": False, **train}}


def test_model_checkpoint_keeps_the_top_k(tmp_path, make_trainer):
    saver = ModelCheckpoint(tmp_path / "weights", monitor="val_loss", save_top_k=2, save_last=True)
    trainer = make_trainer(epochs=6, lr=0.05, callbacks=[saver])
    state = trainer.fit(synthetic(), synthetic(seed=1))
    files = sorted(p.name for p in (tmp_path / "weights").glob("epoch=*.safetensors"))
    assert len(files) == 2 and (tmp_path / "weights" / "last.safetensors").exists()
    best_two = sorted(state.history, key=lambda r: r["val_loss"])[:2]
    assert {f"epoch={r['epoch']}-val_loss={r['val_loss']:.4f}.safetensors" for r in best_two} == set(files)
    assert saver.best_path.endswith(f"epoch={best_two[0]['epoch']}-val_loss={best_two[0]['val_loss']:.4f}"
                                    ".safetensors")


def test_callbacks_from_config_with_arguments(tmp_path, mixed_frame):
    CountEpochs.seen.clear()
    run = fitwell.train(base(tmp_path, epochs=3, callbacks=[
        {"name": "tests.engine.plugins:CountEpochs", "label": "mine"},
        {"name": "model_checkpoint", "monitor": "val_roc_auc", "save_top_k": 1},
        {"name": "grad_norm_monitor", "every_n_steps": 2},
    ]), data=mixed_frame)
    assert CountEpochs.seen == [("mine", 1), ("mine", 2), ("mine", 3)]
    assert len(list((run.path / "weights").glob("epoch=*-val_roc_auc=*.safetensors"))) == 1
    assert all("grad_norm" in row and row["grad_norm"] > 0 for row in run.history)


@pytest.mark.parametrize("callbacks, match", [
    ([{"name": "model_checkpoint", "monitor": "val_r2"}],
     r"train\.callbacks\.0\.monitor: 'val_r2' is never logged for a binary task"),
    ([{"name": "model_chekpoint"}], r"train\.callbacks\.0\.name: unknown callback 'model_chekpoint'\."
                                    r" Did you mean 'model_checkpoint'\?"),
    ([{"name": "budget", "max_tim": 3}], r"train\.callbacks\.0: cannot build 'budget'"),
    ([{"name": "tests.engine.plugins:CountEpochs", "label": "x", "monitor": "val_nope"}],
     r"monitor: 'val_nope' is never logged"),
])
def test_bad_callback_config_fails_at_start(tmp_path, mixed_frame, callbacks, match):
    with pytest.raises(ConfigError, match=match):
        fitwell.train(base(tmp_path, callbacks=callbacks), data=mixed_frame)
    assert not any((tmp_path).glob("*/checkpoints/last.ckpt"))  # failed before any epoch


def test_python_api_callback_monitoring_a_missing_metric(tmp_path, mixed_frame):
    with pytest.raises(ConfigError, match="val_f1.*never logged"):
        fitwell.train(base(tmp_path), data=mixed_frame,
                      callbacks=[ModelCheckpoint("w", monitor="val_f1")])


class BlowUpAfter(Callback):
    """Turn the learning rate up to 1e6 once ``epoch`` epochs are done: the loss diverges."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, state):
        if state.epoch == self.epoch:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e6


def test_nan_guard_stops_names_step_and_tensor_and_keeps_a_good_checkpoint(tmp_path, mixed_frame):
    config = base(tmp_path, epochs=30, optimizer="sgd", momentum=0.0, batch_size=16,
                  early_stopping={"enabled": False}, checkpoint_max_overhead=0)  # every epoch's
    config["model"] = {"hidden_sizes": [64, 64], "dropout": 0.0}
    config["track"]["name"] = "diverge"
    with pytest.raises(TrainingFailed, match=r"non-finite loss .* at step \d+, epoch 3, batch \d+;"
                                              r" first non-finite tensor: (gradient of|parameter) "):
        fitwell.train(config, data=mixed_frame, callbacks=[BlowUpAfter(2)])
    ckpt, _ = load_checkpoint(tmp_path / "diverge" / "checkpoints")
    assert ckpt["trainer"]["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (tmp_path / "diverge" / "metrics.json").exists()


def test_checkpoints_of_tiny_epochs_cost_at_most_their_share(tmp_path, monkeypatch):
    """train.checkpoint_max_overhead: while the last checkpoint's cost is over that share of the
    training time since it, an epoch's checkpoint is skipped; the last epoch is always written."""
    import time
    from types import SimpleNamespace

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    class Trainer:
        epochs = 30

        def checkpoint_state(self, state):
            clock[0] += 1.0  # a snapshot that takes 1 s
            return {"epoch": state.epoch}

    def run(max_overhead: float) -> list[int]:
        writer = CheckpointWriter(tmp_path / f"ckpt{max_overhead}", max_overhead=max_overhead)
        written = []
        monkeypatch.setattr(writer._writer, "submit", lambda obj, folder: written.append(obj["epoch"]))
        for epoch in range(1, 31):
            clock[0] += 10.0  # an epoch of 10 s
            writer.on_epoch_end(Trainer(), SimpleNamespace(epoch=epoch, diverged=False, should_stop=False))
        return written

    assert run(0.0) == list(range(1, 31))  # 0: every epoch
    # 1 s of checkpoint for 2% at most: one per 50 s of training, every 5th epoch, and the last
    assert run(0.02) == [1, 6, 11, 16, 21, 26, 30]
    assert run(0.2) == list(range(1, 31))  # 1 s in 10 s is within 20%


def test_nan_guard_through_the_cli_exits_1(tmp_path, mixed_frame, write_config, capsys):
    csv = tmp_path / "d.csv"
    mixed_frame.to_csv(csv, index=False)
    config = write_config({"data": {"source": str(csv), "target": "label"},
                           "model": {"hidden_sizes": [64, 64], "dropout": 0.0},
                           "train": {"lr": 1e6, "optimizer": "sgd", "momentum": 0.0, "epochs": 30,
                                     "batch_size": 16, "early_stopping": {"enabled": False}}})
    assert run_cli(["train", str(config), "-q"]) == 1
    err = capsys.readouterr().err
    assert "training failed: non-finite loss" in err and "Traceback" not in err


@pytest.mark.parametrize("budget, expect", [({"max_steps": 7}, "step budget"), ({"max_time": 0.01}, "time")])
def test_budget(tmp_path, mixed_frame, budget, expect):
    run = fitwell.train(base(tmp_path, epochs=50, batch_size=16, **budget), data=mixed_frame)
    saved = json.loads(run.dir.metrics.read_text())
    assert expect in saved["stop_reason"]
    if "max_steps" in budget:
        assert saved["steps"] == 7
    assert saved["epochs"] < 50


def test_lr_and_grad_norm_monitors(make_trainer):
    trainer = make_trainer(epochs=2, callbacks=[GradientNormMonitor()])
    state = trainer.fit(synthetic(), synthetic(seed=1))
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm_max"] >= r["grad_norm"] for r in state.history)


def test_grad_norm_is_the_total_gradient_norm_of_each_step(make_trainer):
    class Reference(Callback):  # what torch.nn.utils says, step by step
        def on_fit_start(self, trainer, state):
            self.epoch = []

        def on_before_optimizer_step(self, trainer, state):
            grads = [p.grad for p in trainer.module.parameters() if p.grad is not None]
            self.epoch.append(float(torch.nn.utils.get_total_norm(grads)))

        def on_validation_end(self, trainer, state, metrics):
            metrics["reference_mean"] = sum(self.epoch) / len(self.epoch)
            metrics["reference_max"] = max(self.epoch)
            self.epoch = []

    state = make_trainer(epochs=2, callbacks=[GradientNormMonitor(every_n_steps=1), Reference()]).fit(
        synthetic(), synthetic(seed=1))
    for row in state.history:
        assert row["grad_norm"] == pytest.approx(row["reference_mean"], rel=1e-5)
        assert row["grad_norm_max"] == pytest.approx(row["reference_max"], rel=1e-5)


def test_grad_norms_survive_a_mid_epoch_resume_and_a_parameter_without_a_gradient():
    """A monitor restored from a mid-epoch checkpoint reports the same epoch mean and max as one that
    never stopped, also when a later step leaves a parameter without a gradient."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    trainer = SimpleNamespace(model=model, sharded=False)
    grads = [[torch.randn_like(p) for p in model.parameters()] for _ in range(6)]
    grads[4][-1] = None  # the last bias got no gradient on step 5

    def run(monitor, steps, state=None):
        monitor.on_fit_start(trainer, None)
        if state is not None:
            monitor.load_state_dict(state)
        for step in steps:
            for p, g in zip(model.parameters(), grads[step], strict=True):
                p.grad = g
            monitor.on_before_optimizer_step(trainer, SimpleNamespace(step=step))
        return monitor

    expected = [float(torch.nn.utils.get_total_norm([g for g in step if g is not None])) for step in grads]
    unbroken, metrics = run(GradientNormMonitor(), range(6)), {}
    unbroken.on_validation_end(trainer, None, metrics)
    saved = run(GradientNormMonitor(), range(3)).state_dict()
    resumed, after = run(GradientNormMonitor(), range(3, 6), state=saved), {}
    resumed.on_validation_end(trainer, None, after)
    for got in (metrics, after):
        assert got["grad_norm"] == pytest.approx(sum(expected) / 6, rel=1e-6)
        assert got["grad_norm_max"] == pytest.approx(max(expected), rel=1e-6)


def test_only_implemented_batch_hooks_are_called(tmp_path):
    assert overrides(Budget(), "on_batch_end") and not overrides(Budget(), "on_batch_start")
    assert not overrides(Callback(), "on_batch_end")
    writer = CheckpointWriter(tmp_path)  # per-epoch checkpoints: nothing on the per-batch path
    hooks = ("on_batch_start", "on_batch_end", "on_before_optimizer_step")
    assert not any(writer.uses_hook(hook) for hook in hooks)
    assert CheckpointWriter(tmp_path, every_steps=5).uses_hook("on_batch_end")


def test_callback_state_rides_in_the_checkpoint(tmp_path, mixed_frame):
    class Counter(Callback):
        def on_fit_start(self, trainer, state):
            self.count = 0

        def on_epoch_end(self, trainer, state):
            self.count += 1

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]

    config = base(tmp_path, epochs=4)
    config["track"]["name"] = "r"

    class Stop(Callback):
        def on_epoch_end(self, trainer, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fitwell.train(config, fast(**{"train.epochs": 4}), data=mixed_frame, callbacks=[Counter(), Stop()])
    counter = Counter()
    fitwell.train(resume=tmp_path / "r", data=mixed_frame, callbacks=[counter])
    assert counter.count == 4  # 1 from the checkpoint (epoch 1) + 3 after resuming


def test_resume_checkpoint_stays_off_the_per_batch_path_unless_asked(tmp_path):
    from fitwell.engine.callbacks import CheckpointWriter, NanGuard

    assert not CheckpointWriter(tmp_path).uses_hook("on_batch_end")
    assert CheckpointWriter(tmp_path, every_steps=5).uses_hook("on_batch_end")
    assert CheckpointWriter(tmp_path).uses_hook("on_epoch_end")
    assert NanGuard().uses_hook("on_batch_end") and not NanGuard().uses_hook("on_batch_start")


def test_the_time_budget_counts_from_the_run_start(make_trainer):
    """train.max_time covers loading, audit and preprocessing: a run that spent its budget before
    the first epoch stops at the first batch, and a tenth is kept back for scoring and the report."""
    import time

    late = Budget(max_time=5.0, started_at=time.monotonic() - 4.6, reserve=0.1)  # 4.6 s > 4.5 s
    state = make_trainer(epochs=20, callbacks=[late]).fit(synthetic(), synthetic(seed=1))
    assert state.step == 1 and "time budget" in state.stop_reason
    early = Budget(max_time=60.0, started_at=time.monotonic(), reserve=0.1)
    state = make_trainer(epochs=3, callbacks=[early]).fit(synthetic(), synthetic(seed=1))
    assert state.epoch == 3 and state.stop_reason is None
