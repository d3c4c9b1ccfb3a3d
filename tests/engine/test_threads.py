"""The CPU thread rule: one thread for small models, the free cores for large ones, the user's
setting when there is one; set for the fit and restored after it."""

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
