import copy
import json

import pytest
import torch
import yaml

import fitwell
from fitwell.cli import run_cli
from fitwell.engine.batch_size import activation_bytes, candidates
from fitwell.engine.lr_find import suggest
from fitwell.engine.optim import build_optimizer


def test_suggestion_is_the_steepest_descent():
    lrs = [10 ** (-6 + i * 0.25) for i in range(25)]
    # flat, falls fastest at index 14 (central difference), bottoms at 18, then explodes
    losses = [1.0] * 10 + [0.98, 0.95, 0.9, 0.8, 0.55, 0.3, 0.28, 0.27, 0.26, 0.5, 0.9, 2.0, 4.0, 8.0, 16.0]
    assert suggest(lrs, losses) == pytest.approx(lrs[14])


def test_lr_auto_runs_the_range_test_and_records_the_rate(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"lr": "auto", "epochs": 3, "progress": False}}, data=mixed_frame)
    chosen = yaml.safe_load(run.dir.config.read_text())["train"]["lr"]
    found = json.loads((run.path / "lr_find.json").read_text())
    assert isinstance(chosen, float) and chosen == found["suggestion"] and 1e-5 < chosen < 1
    assert (run.path / "lr_find.png").stat().st_size > 1000


def test_lr_find_command(tmp_path, capsys):
    code = run_cli(["lr-find", "examples/wine.yaml", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "suggested lr:" in out and (tmp_path / "lr_find-wine.png").exists()


def test_batch_size_auto_on_cpu(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"batch_size": "auto", "epochs": 2, "progress": False}}, data=mixed_frame)
    found = json.loads((run.path / "batch_size.json").read_text())
    chosen = yaml.safe_load(run.dir.config.read_text())["train"]["batch_size"]
    assert chosen == found["batch_size"] and chosen in candidates(len(mixed_frame))
    speeds = {int(k): v["samples_per_second"] for k, v in found["tried"].items() if "samples_per_second" in v}
    assert speeds[chosen] == max(speeds.values())


def test_memory_cap_skips_big_batches(tmp_path, mixed_frame):
    run = fitwell.train({"data": {"target": "label"}, "track": {"report": False, "runs_dir": str(tmp_path)},
                         "train": {"batch_size": "auto", "batch_size_memory_cap": 1e-5, "epochs": 1,
                                   "progress": False}}, data=mixed_frame)
    found = json.loads((run.path / "batch_size.json").read_text())
    assert any(v.get("skipped") == "over the memory cap" for v in found["tried"].values())


def test_activation_bytes_grow_with_the_batch():
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, numeric, codes):
            return self.net(numeric)

    loss = lambda out, y: out.squeeze(-1).sub(y).pow(2).mean()  # noqa: E731
    small = activation_bytes(Wrap(), loss, (torch.randn(16, 8), None, torch.randn(16)))
    big = activation_bytes(Wrap(), loss, (torch.randn(64, 8), None, torch.randn(16 * 4)))
    assert big > 3 * small > 0


def test_deterministic_runs_repeat(tmp_path, mixed_frame):
    def metrics(seed):
        return fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                              "seed": seed, "train": {"deterministic": True, "epochs": 4, "progress": False}},
                             data=mixed_frame).metrics

    try:
        assert metrics(3) == metrics(3) and metrics(3) != metrics(4)
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name, kwargs, expected", [
    ("sgd", {"nesterov": True}, torch.optim.SGD), ("adagrad", {}, torch.optim.Adagrad),
    ("rmsprop", {}, torch.optim.RMSprop), ("adam", {}, torch.optim.Adam), ("adamw", {}, torch.optim.AdamW),
])
def test_optimizers(name, kwargs, expected):
    opt = build_optimizer(name, torch.nn.Linear(3, 1), lr=0.1, weight_decay=0.01, **kwargs)
    assert isinstance(opt, expected)
    if kwargs.get("nesterov"):
        assert opt.defaults["nesterov"] is True


@pytest.mark.parametrize("name, reference", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_steps_fused_and_follows_torchs_own_adam(name, reference):
    """fitwell's Adam takes PyTorch's fused kernel on a CPU (one kernel for every tensor, not a
    Python loop over them) and trains the same weights as torch's default Adam, within rounding."""
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    theirs = copy.deepcopy(ours)
    opt = build_optimizer(name, ours, lr=0.05, weight_decay=0.01)
    ref = reference([{"params": [theirs[0].weight, theirs[2].weight], "weight_decay": 0.01},
                     {"params": [theirs[0].bias, theirs[2].bias], "weight_decay": 0.0}], lr=0.05)
    assert opt.defaults["fused"] is True and not ref.defaults["fused"]
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    for _ in range(50):
        for model, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
