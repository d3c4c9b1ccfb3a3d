"""The CPU thread rule: one thread for small models, the free cores for large ones, the user's
setting when there is one; set for the fit and restored after it."""

import numpy as np
import pytest
import torch

import fitwell
from fitwell.engine.threads import CROSSOVER_MACS, choose_threads, forward_macs, thread_limit
from fitwell.models import MLP


@pytest.mark.parametrize("setting, macs, deterministic, busy, expected", [
    ("auto", CROSSOVER_MACS // 10, False, 0, 1),    # small: one thread, whatever the machine
    ("auto", CROSSOVER_MACS // 10, False, 7, 1),
    ("auto", CROSSOVER_MACS * 10, False, 0, 8),     # large on a quiet machine: every core
    ("auto", CROSSOVER_MACS * 10, False, 3, 5),     # large on a busy machine: the free cores
    ("auto", CROSSOVER_MACS * 10, False, 20, 1),    # never below one
    ("auto", CROSSOVER_MACS * 10, True, 3, 8),      # deterministic: a fixed count
    (3, CROSSOVER_MACS // 10, False, 0, 3),         # train.threads wins
])
def test_choose_threads(monkeypatch, setting, macs, deterministic, busy, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(setting, macs, deterministic, cores=8, busy=busy)[0] == expected


def test_omp_num_threads_is_honoured(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with thread_limit(1):
        assert choose_threads("auto", CROSSOVER_MACS * 10, cores=8, busy=0) == (1, "OMP_NUM_THREADS")


def test_forward_macs_counts_an_mlp():
    model = MLP(10, [], 2, hidden_sizes=[16])
    # 10*16 + 16*2 multiply-adds per row
    assert forward_macs(model, torch.zeros(4, 10), torch.zeros(4, 0, dtype=torch.long)) == 4 * (160 + 32)


def test_a_run_trains_small_models_on_one_thread_and_restores_the_count(tmp_path, mixed_frame, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []

    class Spy(fitwell.Callback):
        def on_epoch_end(self, trainer, state):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    messages = []

    class Console:
        def print(self, text, **kwargs):
            messages.append(str(text))

    fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                   "train": {"epochs": 2, "progress": False}, "explain": {"permutation": False}},
                  data=mixed_frame, callbacks=[Spy()], console=Console())
    assert seen == [1, 1]
    assert torch.get_num_threads() == before
    assert any(m.startswith("threads: 1 (small model") for m in messages)
    fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                   "train": {"epochs": 1, "progress": False, "threads": 2},
                   "explain": {"permutation": False}},
                  data=mixed_frame, callbacks=[Spy()])
    assert seen[-1] == 2 and torch.get_num_threads() == before


@pytest.mark.parametrize("busy_share, own, expected", [
    (1.0, 1.0, 1),   # both of 2 cores busy, one of them ours: another process holds the other
    (0.5, 1.0, 2),   # only ours
    (1.0, 2.0, 2),   # both ours
    (0.9, 0.4, 1),   # others hold about 1.4 cores
    (1.0, 0.0, 1),   # others hold both: never below one
])
def test_threads_left_for_the_cores_others_leave_free(busy_share, own, expected):
    from fitwell.engine.threads import threads_left

    assert threads_left(busy_share * 2 - own, ceiling=2, cores=2) == expected
    assert threads_left(0.0, ceiling=3, cores=8) == 3  # never above the count chosen at the start


def test_busy_cores_reads_since_its_last_reading_and_leaves_out_its_own_time(monkeypatch):
    """A second reading within 5 s does not sleep again (the folds of a member each ask), and this
    process's CPU time in between is not counted as other work; an older one samples afresh."""
    import fitwell.engine.threads as threads

    readings = iter([
        (100.0, (0, 0), 0.0),         # the first call: no earlier reading, so it sleeps...
        (100.1, (10, 20), 0.0),       # ...0.1 s: half the CPUs busy, none of it ours -> 1 of 2 cores
        (102.1, (410, 420), 2.0),     # 2 s later: every CPU busy, 1 core of it ours -> 1 busy
        (102.6, (460, 520), 2.5),     # 0.5 s later: half busy, all ours -> none
        (120.0, (460, 1520), 2.5),    # 17 s later: too old, a fresh sample...
        (120.1, (480, 1540), 2.5),    # ...in which others held both cores
    ])
    sleeps = []
    monkeypatch.setattr(threads, "_last_reading", None)
    monkeypatch.setattr(threads, "_reading", lambda: next(readings))
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads.time, "sleep", sleeps.append)
    assert threads.busy_cores() == 1 and sleeps == [0.1]
    assert threads.busy_cores() == 1 and sleeps == [0.1]
    assert threads.busy_cores() == 0 and sleeps == [0.1]
    assert threads.busy_cores() == 2 and sleeps == [0.1, 0.1]


def test_a_count_from_the_free_cores_follows_them_and_a_users_count_does_not(monkeypatch):
    import fitwell.engine.threads as threads
    from fitwell.config import load_config
    from fitwell.data.tensors import TensorData
    from fitwell.engine.build import training_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.1: 0)
    wide = MLP(64, [], 2, hidden_sizes=[512, 512])  # about 300k multiply-adds a row: above the crossover
    rows = np.zeros((4, 64), np.float32)
    data = TensorData.from_numpy(rows, np.zeros((4, 0), np.int64), np.zeros(4, np.int64))
    count, _, following = training_threads(load_config({"train": {"batch_size": 256}}), wide, data)
    assert count == 2 and [type(cb) for cb in following] == [threads.FollowFreeCores]
    assert following[0].ceiling == 2
    for train in ({"threads": 2}, {"deterministic": True}):
        assert training_threads(load_config({"train": {"batch_size": 256, **train}}), wide, data)[2] == []
    small = MLP(64, [], 2, hidden_sizes=[8])
    count, _, following = training_threads(load_config({}), small, data)
    assert (count, following) == (1, [])


@pytest.mark.serial
@pytest.mark.skipif(__import__("os").cpu_count() < 2, reason="needs 2 cores")
def test_the_count_goes_down_while_another_process_holds_a_core_and_back_up_after():
    """A run on 2 threads (busy on one core here) with a burner process on the other: the count
    drops to one within a few readings, and returns to 2 once the burner stops."""
    import subprocess
    import sys
    import time

    from fitwell.engine.threads import FollowFreeCores, thread_limit

    def train_for(follower, seconds, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            x = 0.0
            for _ in range(20_000):  # a step's work on this thread
                x += 1.0
            follower.on_batch_end(None, None)

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with thread_limit(2):
            follower = FollowFreeCores(ceiling=2, every=0.3)
            follower.on_fit_start(None, None)
            train_for(follower, 6.0, until=lambda: torch.get_num_threads() == 1)
            assert torch.get_num_threads() == 1, follower.counts
            burner.kill()
            burner.wait()
            train_for(follower, 6.0, until=lambda: torch.get_num_threads() == 2)
            assert follower.counts == [1, 2]
    finally:
        burner.kill()
