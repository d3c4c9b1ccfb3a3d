"""User-facing error types.

A user error (bad config, bad data, bad arguments) is one of these; the CLI prints the message
and exits 2 without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """A mistake the user can fix; the message says what, where and how."""


class ConfigError(UserError):
    """Bad user configuration; the message names the key and the fix."""


class DataError(UserError):
    """Bad input data; the message names the file, column or row and the fix."""


class DamagedRun(UserError):
    """A run directory whose files are missing, changed or unreadable; the message names the file."""


class TrainingFailed(RuntimeError):
    """Training could not finish (it diverged); the message says where and what to try.

    The CLI prints it without a traceback and exits 1; the run directory keeps the last good
    checkpoint.
    """


class CheckFailed(RuntimeError):
    """A check the user asked for found a difference (``fitwell export --check``); the CLI prints
    it without a traceback and exits 1."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
