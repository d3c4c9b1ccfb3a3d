import math

import pytest
import torch

from fitwell.config import TrainConfig
from fitwell.engine.schedules import build_schedule

BASE, STEPS, EPOCHS = 0.1, 4, 10


def simulate(**schedule):
    """The learning rate in force at each optimizer step (per-batch) or epoch (per-epoch)."""
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=BASE)
    cfg = TrainConfig(schedule=schedule).schedule
    sched = build_schedule(cfg, opt, STEPS, EPOCHS, BASE)
    rates = []
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched.interval == "batch":
                sched.scheduler.step()
        if sched.interval == "epoch":
            sched.scheduler.step()
    return sched.interval, rates


def per_epoch(rates):
    return rates[::STEPS]


def cosine(t, total, top=BASE, bottom=0.0):
    return bottom + (top - bottom) * (1 + math.cos(math.pi * t / total)) / 2


@pytest.mark.parametrize("schedule, interval, formula", [
    ({"name": "step", "step_size": 3, "gamma": 0.5}, "epoch", lambda e: BASE * 0.5 ** (e // 3)),
    ({"name": "multistep", "milestones": [2, 7], "gamma": 0.1}, "epoch",
     lambda e: BASE * 0.1 ** sum(e >= m for m in (2, 7))),
    ({"name": "exponential", "gamma": 0.9}, "epoch", lambda e: BASE * 0.9**e),
])
def test_per_epoch_schedules(schedule, interval, formula):
    got_interval, rates = simulate(**schedule)
    assert got_interval == interval
    assert per_epoch(rates) == pytest.approx([formula(e) for e in range(EPOCHS)], rel=1e-9)
    assert rates[:STEPS] == [BASE] * STEPS  # constant inside an epoch


def test_cosine_with_linear_warmup():
    interval, rates = simulate(name="cosine", warmup_epochs=1, warmup_start=0.1, min_lr=0.001)
    warm, total = STEPS, STEPS * EPOCHS
    expected = [BASE * (0.1 + 0.9 * t / warm) if t < warm else cosine(t - warm, total - warm, BASE, 0.001)
                for t in range(total)]
    assert interval == "batch" and rates == pytest.approx(expected, rel=1e-6)


def test_cosine_without_warmup():
    _, rates = simulate(name="cosine")
    assert rates == pytest.approx([cosine(t, STEPS * EPOCHS) for t in range(STEPS * EPOCHS)], rel=1e-6)


def test_cosine_with_restarts():
    _, rates = simulate(name="cosine_restarts", restart_epochs=3)
    cycle = 3 * STEPS
    assert rates == pytest.approx([cosine(t % cycle, cycle) for t in range(STEPS * EPOCHS)], rel=1e-6)
    assert rates[cycle] == pytest.approx(BASE)  # restarted


def test_linear_decay():
    _, rates = simulate(name="linear", min_lr=0.01)
    total = STEPS * EPOCHS
    assert rates == pytest.approx([BASE + (0.01 - BASE) * t / total for t in range(total)], rel=1e-6)


def test_one_cycle():
    _, rates = simulate(name="onecycle", max_lr=1.0, pct_start=0.25)
    total = STEPS * EPOCHS
    peak = int(0.25 * total) - 1
    assert rates[0] == pytest.approx(1.0 / 25)  # OneCycleLR's div_factor
    assert rates[peak] == pytest.approx(1.0)
    assert max(rates) == pytest.approx(1.0)
    down = peak + (total - 1 - peak) // 2
    expected_mid = 1.0 / (25 * 1e4) + (1.0 - 1.0 / (25 * 1e4)) * (1 + math.cos(math.pi * 0.5)) / 2
    assert rates[down] == pytest.approx(expected_mid, rel=0.05)
    assert rates[-1] < 1e-3


def test_reduce_on_plateau():
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=BASE)
    cfg = TrainConfig(schedule={"name": "plateau", "patience": 2, "gamma": 0.5}).schedule
    sched = build_schedule(cfg, opt, STEPS, EPOCHS, BASE)
    assert sched.interval == "plateau" and sched.monitor == "val_loss"
    rates = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        sched.scheduler.step(loss)
        rates.append(opt.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_schedule_runs_in_training_and_lr_is_logged(tmp_path, mixed_frame):
    import fitwell

    run = fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                         "train": {"epochs": 6, "lr": 0.01, "progress": False,
                                   "early_stopping": {"enabled": False},
                                   "schedule": {"name": "step", "step_size": 2, "gamma": 0.1}}},
                        data=mixed_frame)
    assert [round(r["lr"], 6) for r in run.history] == [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
