"""How many intra-op threads a run's training uses on the CPU.

PyTorch starts with one thread per core. For small models that is no faster than one thread, and
when other processes keep the cores busy its threads wait on each other: measured here
(``bench/threads.py``, 2 cores, batch 256) two threads ran a 32->64->64->2 MLP step in 325 us quiet
and 725 us with one core busy, one thread in 338 us either way. More threads pay from about
3 million multiply-adds per batch (a 128-wide MLP at batch 256: 1.24x faster with 2 threads).

The rule: ``train.threads`` when set; ``OMP_NUM_THREADS`` when the user set it; else one thread
below the measured crossover, and above it the cores that are not already busy (read from
/proc/stat over a tenth of a second, or since the last reading when that was under 5 s ago) --
except with ``train.deterministic``, where it stays every core so that two runs use the same
thread count. The count is set for the fit only and restored afterwards.

A count taken from the free cores then follows them while the run trains (``FollowFreeCores``):
every two seconds the other processes' share of the CPUs is read from /proc/stat (this process's
own CPU time taken out), and the count goes down to the cores they leave free, or back up to what
was chosen at the start. A burner started on one of 2 cores 8 s after the tabular transformer's
quality-floor test began (after its run chose 2 threads) made the test 2.6x slower than quiet
(60.6 and 66.0 s against 23.5-24.7 s); following the load, 26.9 and 30.2 s.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import torch

from fitwell.engine.callbacks.base import Callback

# Multiply-adds of one batch's forward pass from which two threads beat one by 15% or more.
CROSSOVER_MACS = 3_000_000


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The busy share of every CPU between two ``_cpu_times`` readings; None without both or
    without time between them."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


_last_reading: tuple[float, tuple[int, int] | None, float] | None = None  # busy_cores' last


def _reading() -> tuple[float, tuple[int, int] | None, float]:
    """(monotonic seconds, ``_cpu_times``, this process's CPU seconds) now."""
    return time.monotonic(), _cpu_times(), sum(os.times()[:2])


def _others(then: tuple, now: tuple, cores: int) -> float | None:
    """Cores other processes kept busy between two ``_reading``s: every CPU's busy share less this
    process's own CPU time; None where /proc/stat cannot tell."""
    share = _busy_share(then[1], now[1])
    if share is None:
        return None
    return share * cores - (now[2] - then[2]) / (now[0] - then[0])


def busy_cores(window: float = 0.1, reuse: float = 5.0) -> int:
    """Cores other processes keep busy right now, from the busy share of every CPU (Linux) less
    this process's own CPU time: since the last call when that was ``window`` to ``reuse`` seconds
    ago (the folds of a member ask before each fit: one sample each would sleep each time), else
    over ``window`` seconds of sleep. Elsewhere the 1-minute load average less this process; it
    lags a minute behind (after a busy spell it still reports cores busy that are free), so it is
    only the fallback."""
    global _last_reading
    then, now = _last_reading, _reading()
    if then is None or not window <= now[0] - then[0] <= reuse:
        time.sleep(window)
        then, now = now, _reading()
    _last_reading = now
    others = _others(then, now, available_cores())
    if others is not None:
        return max(0, int(others + 0.5))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0
    return max(0, int(load + 0.5) - 1)


def forward_macs(model: torch.nn.Module, numeric: torch.Tensor, codes: torch.Tensor,
                 inputs: dict | None = None) -> int:
    """Multiply-adds of one forward pass over the given rows (PyTorch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(numeric, codes, **(inputs or {}))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def choose_threads(setting: int | str, macs_per_batch: int, deterministic: bool = False,
                   cores: int | None = None, busy: int | None = None) -> tuple[int, str]:
    """``(threads, reason)`` for a model doing ``macs_per_batch`` multiply-adds a batch.

    Example:
        >>> choose_threads("auto", 500_000, cores=8, busy=0)
        (1, 'small model: 500,000 multiply-adds a batch is below the 3,000,000 where more threads pay')
        >>> choose_threads("auto", 50_000_000, cores=8, busy=3)[0]
        5
    """
    if setting != "auto":
        return int(setting), "train.threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cores = available_cores() if cores is None else cores
    if macs_per_batch < CROSSOVER_MACS:
        return 1, (f"small model: {macs_per_batch:,} multiply-adds a batch is below the {CROSSOVER_MACS:,}"
                   " where more threads pay")
    if deterministic:
        return cores, "every core (train.deterministic keeps the count fixed)"
    busy = busy_cores() if busy is None else busy
    free = max(1, cores - busy)
    return free, f"{free} of {cores} cores" + (f" ({busy} busy with other work)" if busy else "")


def follows_load(setting: int | str, deterministic: bool = False) -> bool:
    """Whether ``choose_threads`` takes the count from the free cores (so that it may follow them
    while training): not a count the user set (``train.threads``, ``OMP_NUM_THREADS``), nor the
    fixed one of a deterministic run."""
    return setting == "auto" and not os.environ.get("OMP_NUM_THREADS") and not deterministic


def threads_left(others: float, ceiling: int, cores: int) -> int:
    """The thread count for the cores other processes leave free when they keep ``others`` of the
    ``cores`` busy (``_others``); never above ``ceiling`` nor below one.

    Example:
        >>> threads_left(1.0, ceiling=2, cores=2)  # a burner holds the other core
        1
        >>> threads_left(0.0, ceiling=2, cores=2)  # it stopped
        2
    """
    return max(1, min(ceiling, cores - int(others + 0.5)))


class FollowFreeCores(Callback):
    """Keep the intra-op thread count to the cores other processes leave free, read every
    ``every`` seconds of training, between ``ceiling`` (the count chosen at the start) and one.

    A count chosen from a quiet machine oversubscribes it once other work starts: each of the
    run's threads then waits for the others at every parallel region. Added by
    ``fitwell.engine.build.training_threads`` when the count came from the free cores and is more
    than one; a cost per step of one clock reading.
    """

    order = -20
    stops_alike = True  # never stops

    def __init__(self, ceiling: int, every: float = 2.0):
        self.ceiling, self.every = ceiling, every
        self.counts: list[int] = []  # every count it set, in order

    def on_fit_start(self, trainer, state):
        self._last = _reading()

    def on_batch_end(self, trainer, state):
        if time.monotonic() - self._last[0] < self.every:
            return
        then, self._last = self._last, _reading()
        others = _others(then, self._last, available_cores())
        if others is None:
            return
        threads = threads_left(others, self.ceiling, available_cores())
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            self.counts.append(threads)


def free_cores() -> int:
    """Cores not kept busy by other processes (at least one): the thread count for work whose
    threads spin while they wait (OpenMP in LightGBM and scikit-learn's tree models)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, available_cores() - busy_cores())


@contextmanager
def thread_limit(threads: int):
    """PyTorch's intra-op threads set to ``threads`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
