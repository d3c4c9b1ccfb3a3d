"""Save and load training checkpoints atomically (temp file, fsync, rename), off the hot path.

``last.ckpt`` is the newest checkpoint and ``prev.ckpt`` the one before; a truncated or corrupt
``last.ckpt`` falls back to ``prev.ckpt`` with a message. Checkpoints hold only tensors and
plain Python values, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST, PREVIOUS = "last.ckpt", "prev.ckpt"


def write_atomic(obj: Any, path: Path) -> None:
    """torch.save to ``path`` so that a reader sees the old file or the whole new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rotate_and_write(obj: Any, folder: Path) -> None:
    """Keep the current ``last.ckpt`` as ``prev.ckpt``, then write the new ``last.ckpt``."""
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / LAST
    if last.exists():
        os.replace(last, folder / PREVIOUS)
    write_atomic(obj, last)


class BackgroundWriter:
    """Writes one checkpoint at a time on a worker thread; ``wait`` re-raises its error."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.last_seconds = 0.0  # how long the last finished write took on the worker thread

    def submit(self, obj: Any, folder: Path) -> None:
        self.wait()

        def work():
            started = time.perf_counter()
            try:
                rotate_and_write(obj, folder)
            except BaseException as err:  # surfaced by wait()
                self._error = err
            self.last_seconds = time.perf_counter() - started

        self._thread = threading.Thread(target=work, name="fitwell-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(folder: Path) -> tuple[dict, Path]:
    """The newest readable checkpoint in ``folder`` and its path.

    Raises:
        FileNotFoundError: no readable checkpoint is there.
    """
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "model" not in ckpt:
                raise ValueError("not a fitwell checkpoint")
        except Exception as err:  # truncated, corrupt, or foreign
            problems.append(f"{path.name}: {err.__class__.__name__}: {str(err)[:120]}")
            warnings.warn(f"checkpoint {path} is unreadable ({err.__class__.__name__}); trying an older one",
                          stacklevel=2)
            continue
        return ckpt, path
    detail = "; ".join(problems) if problems else "none was written"
    raise FileNotFoundError(f"no readable checkpoint in {folder} ({detail})")


def clone_state(obj: Any) -> Any:
    """Deep copy of nested dicts/lists with tensors cloned to CPU (a snapshot to write later)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj


def rng_state() -> dict:
    """Every RNG that training touches, in a form ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
