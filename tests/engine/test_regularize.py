import copy

import numpy as np
import pytest
import torch

import fitwell
from fitwell.engine.averaging import WeightAverage
from fitwell.engine.callbacks import Callback
from fitwell.engine.regularize import WeightPenalty
from tests.engine.conftest import synthetic


def test_l1_drives_irrelevant_weights_to_zero(make_trainer):
    """Logistic regression (no hidden layer): features 2-5 carry no signal."""
    data = synthetic()
    plain = make_trainer(hidden=(), epochs=60, lr=0.1)
    plain.fit(data)
    sparse = make_trainer(hidden=(), epochs=60, lr=0.1)
    sparse.penalty = WeightPenalty(sparse.module, l1=0.01)
    sparse.fit(data)
    noise = sparse.module.head.weight.detach()[0, 2:].abs()
    signal = sparse.module.head.weight.detach()[0, :2].abs()
    assert float(noise.max()) < 0.02 and float(signal.min()) > 0.5
    assert float(plain.module.head.weight.detach()[0, 2:].abs().max()) > 0.05


def test_l2_shrinks_weights_and_skips_biases(make_trainer):
    data = synthetic()
    plain, ridge = make_trainer(epochs=10), make_trainer(epochs=10)
    ridge.penalty = WeightPenalty(ridge.module, l2=0.05)
    plain.fit(data)
    ridge.fit(data)
    norm = lambda t: float(t.module.body[0].weight.detach().norm())  # noqa: E731
    assert norm(ridge) < 0.7 * norm(plain)
    assert all(p.ndim >= 2 for p in ridge.penalty.params)


def test_elastic_net_is_both_penalties():
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, -0.5)
    value = WeightPenalty(model, l1=0.1, l2=0.2)()
    assert float(value.detach()) == pytest.approx(0.1 * 6 * 0.5 + 0.2 * 6 * 0.25)


def test_batch_norm_uses_running_stats_at_validation_and_saves_them(make_trainer):
    trainer = make_trainer(batch_norm=True, epochs=2)
    data = synthetic()
    trainer.fit(data)
    state = trainer.module.state_dict()
    assert "body.1.running_mean" in state and float(state["body.1.running_mean"].abs().sum()) > 0
    first = trainer.predict_output(data.select(torch.arange(5)))
    single = trainer.predict_output(data.select(torch.arange(1)))
    assert torch.allclose(first[:1], single)  # eval mode: a row's output does not depend on its batch
    assert trainer.module.training  # training mode restored after validation


def test_dropout_is_off_at_validation(make_trainer):
    trainer = make_trainer(dropout=0.5, epochs=1)
    data = synthetic()
    trainer.fit(data)
    a = trainer.predict_output(data)
    b = trainer.predict_output(data)
    assert torch.equal(a, b)


class Record(Callback):
    """Copies of the weights after every optimizer step and at every epoch end."""

    def on_fit_start(self, trainer, state):
        self.steps, self.epochs = [], []

    def on_batch_end(self, trainer, state):
        self.steps.append(copy.deepcopy(trainer.module.state_dict()))

    def on_epoch_end(self, trainer, state):
        self.epochs.append(copy.deepcopy(trainer.module.state_dict()))


def test_ema_weights_follow_the_formula(make_trainer):
    record = Record()
    trainer = make_trainer(epochs=2, callbacks=[record])
    trainer.averaging = WeightAverage(trainer.module, trainer.optimizer, "ema", decay=0.9)
    trainer.fit(synthetic())
    key = "body.0.weight"
    expected = record.steps[0][key].clone()  # AveragedModel copies the first update
    for snapshot in record.steps[1:]:
        expected = 0.9 * expected + 0.1 * snapshot[key]
    assert torch.allclose(trainer.eval_module.state_dict()[key], expected, atol=1e-6)
    assert not torch.allclose(trainer.module.state_dict()[key], expected)


def test_swa_averages_epoch_end_weights_from_start_epoch(make_trainer):
    record = Record()
    trainer = make_trainer(epochs=5, callbacks=[record])
    trainer.averaging = WeightAverage(trainer.module, trainer.optimizer, "swa", start_epoch=3, swa_lr=0.01)
    trainer.fit(synthetic())
    key = "body.0.weight"
    expected = torch.stack([e[key] for e in record.epochs[2:]]).mean(0)
    assert torch.allclose(trainer.eval_module.state_dict()[key], expected, atol=1e-6)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_label_smoothing_changes_the_targets():
    from fitwell.engine.losses import build_loss

    logits = torch.tensor([[3.0], [-2.0]])
    target = torch.tensor([1, 0])
    smooth = build_loss("auto", "binary", label_smoothing=0.2)(logits, target)
    soft = torch.tensor([0.9, 0.1])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(), soft)
    assert torch.allclose(smooth, expected)
    multi = build_loss("auto", "multiclass", label_smoothing=0.3)
    assert multi.label_smoothing == 0.3


class GradProbe(Callback):
    def on_fit_start(self, trainer, state):
        self.max_abs, self.norms = [], []

    def on_before_optimizer_step(self, trainer, state):
        grads = [p.grad for p in trainer.module.parameters()]
        self.max_abs.append(max(float(g.abs().max()) for g in grads))
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@pytest.mark.parametrize("kind", ["norm", "value"])
def test_gradient_clipping(make_trainer, kind):
    probe = GradProbe()
    kwargs = {"clip_grad_norm": 0.01} if kind == "norm" else {"clip_grad_value": 0.001}
    trainer = make_trainer(epochs=1, lr=1.0, callbacks=[probe], **kwargs)
    trainer.fit(synthetic())
    if kind == "norm":
        assert max(probe.norms) <= 0.01 + 1e-6
    else:
        assert max(probe.max_abs) <= 0.001 + 1e-9


def test_accumulation_equals_a_bigger_batch(make_trainer):
    data = synthetic(n=256)
    big = make_trainer(epochs=2, batch_size=64)
    small = make_trainer(epochs=2, batch_size=32, accumulate_batches=2)
    big.fit(data)
    small.fit(data)
    for (name, a), b in zip(big.module.state_dict().items(), small.module.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_bf16_mixed_precision_on_cpu(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"precision": "bf16-mixed", "accelerator": "cpu", "epochs": 15,
                                   "progress": False, "early_stopping": {"enabled": False}}},
                        data=mixed_frame)
    losses = [r["train_loss"] for r in run.history]
    assert losses[-1] < 0.7 * losses[0] and run.metrics["accuracy"] > 0.8


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "leaky_relu", "tanh", "sigmoid"])
def test_activations_train(tmp_path, mixed_frame, activation):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "model": {"activation": activation},
                         "train": {"epochs": 6, "progress": False, "lr": 0.01}}, data=mixed_frame)
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]


def test_init_fits_the_activation():
    from fitwell.models import MLP

    torch.manual_seed(0)
    relu = MLP(400, [], 1, hidden_sizes=[400], activation="relu").body[0].weight.detach()
    tanh = MLP(400, [], 1, hidden_sizes=[400], activation="tanh").body[0].weight.detach()
    assert float(relu.var()) == pytest.approx(2 / 400, rel=0.1)  # He
    assert float(tanh.var()) == pytest.approx((5 / 3) ** 2 * 2 / 800, rel=0.1)  # Glorot, tanh gain
    assert np.isclose(float(MLP(4, [], 1, hidden_sizes=[4]).body[0].bias.detach().abs().sum()), 0)
