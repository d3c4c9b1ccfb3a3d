"""Divide rows into train / validation / test positions: random, stratified, grouped, or by time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from fitwell.config.schema import SplitConfig
from fitwell.errors import ConfigError, DataError, did_you_mean


@dataclass(frozen=True)
class Split:
    """Row positions (not index labels) of each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def resolve_method(config: SplitConfig, task: str) -> str:
    if config.method != "auto":
        return config.method
    return "random" if task == "regression" else "stratified"


def strata(codes: np.ndarray, least: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The labels a stratified split is made on, and the classes too rare to stratify on their own.

    Each class with ``least`` rows or more (one for each of train, validation and test) is its own
    stratum; the rarer ones share one -- or join the largest class's when together they are fewer
    than ``least`` rows -- so their rows are placed at random instead of failing the split. Kept as
    they are when fewer than two classes have ``least`` rows (a split then cannot give the model
    two classes to learn from; ``split_rows`` says so).

    Example:
        >>> strata(np.array([0, 0, 0, 1, 1, 1, 2, 3, 4]))
        (array([0, 0, 0, 1, 1, 1, 5, 5, 5]), array([2, 3, 4]))
    """
    classes, counts = np.unique(codes, return_counts=True)
    rare = classes[counts < least]
    if len(rare) == 0 or len(classes) - len(rare) < 2:
        return codes, rare[:0]
    shared = classes.max() + 1 if counts[counts < least].sum() >= least else classes[counts.argmax()]
    return np.where(np.isin(codes, rare), shared, codes), rare


def split_rows(frame: pd.DataFrame, y: np.ndarray, config: SplitConfig, task: str, seed: int,
               names=None) -> Split:
    """Seeded split of ``frame``'s rows by ``config``; ``names``: the class of each code in ``y``
    (for the error message).

    Raises:
        ConfigError: the group or time column is not in the data.
        DataError: too few rows, or a class too small to stratify.
    """
    n = len(frame)
    method = resolve_method(config, task)
    if n < 10:
        raise DataError(f"only {n} rows left after cleaning; need at least 10 to split and train")
    positions = np.arange(n)
    n_test = 0 if config.test == 0 else max(1, round(config.test * n))  # 0: the user's own test file
    n_val = round(config.val * n)
    if method == "time":
        order = np.argsort(_times(frame, config.time_column), kind="stable")
        n_train = n - n_test - n_val
        return Split(order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    if method == "group":
        groups = _column(frame, config.group_column, "split.group_column").to_numpy()
        rest, test = _group_split(positions, groups, config.test, seed)
        val_share = config.val / (config.train + config.val)
        if config.val == 0:
            return Split(np.sort(rest), np.array([], dtype=int), np.sort(test))
        train, val = _group_split(rest, groups[rest], val_share, seed + 1)
        return Split(np.sort(train), np.sort(val), np.sort(test))
    stratify = y if method == "stratified" else None
    if stratify is not None:  # a stratified part has room for a row of every class (60 rows, 10 classes)
        classes = len(np.unique(y))
        n_test = max(n_test, classes) if n_test else 0
        n_val = max(n_val, classes) if config.val else 0
    try:
        rest, test = (positions, positions[:0]) if n_test == 0 else train_test_split(
            positions, test_size=n_test, random_state=seed, stratify=stratify)
        if config.val == 0:
            return Split(np.sort(rest), np.array([], dtype=int), np.sort(test))
        train, val = train_test_split(rest, test_size=n_val, random_state=seed + 1,
                                      stratify=None if stratify is None else y[rest])
    except ValueError as err:
        if stratify is None:
            raise DataError(f"cannot split {n} rows: {err}") from err
        classes, counts = np.unique(y, return_counts=True)
        shown = classes if names is None else [names[c] for c in classes]
        rare = [f"{c} ({k} rows)" for c, k in zip(shown, counts, strict=True) if k < 3]
        why = f"{len(rare)} of {len(classes)} classes have fewer than 3 rows: {', '.join(rare[:10])}" \
            + (", ..." if len(rare) > 10 else "") if rare else str(err)
        raise DataError(
            f"stratified split failed: {why}. Each class needs rows in train, validation and test; add"
            " data, merge rare classes, or set split.method: random"
        ) from err
    return Split(np.sort(train), np.sort(val), np.sort(test))


def duplicate_groups(frame: pd.DataFrame) -> np.ndarray | None:
    """A group id per row where identical rows share one (None when no row repeats)."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    _, first, groups = np.unique(hashes, return_index=True, return_inverse=True)
    return groups if len(first) < len(frame) else None


def keep_duplicates_together(split: Split, groups: np.ndarray | None) -> Split:
    """Move every copy of a repeated row into the part that holds its first copy (train, then
    validation, then test), so a row is never in training and, identical, in test."""
    if groups is None:
        return split
    part = np.empty(len(groups), dtype=np.int8)
    for code, rows in enumerate((split.train, split.val, split.test)):
        part[rows] = code
    order = np.concatenate([split.train, split.val, split.test])
    home: dict[int, int] = {}
    for row in order:  # the first copy met in train, validation, test order decides
        home.setdefault(int(groups[row]), int(part[row]))
    moved = np.array([home[int(g)] for g in groups], dtype=np.int8)
    parts = [np.flatnonzero(moved == code) for code in range(3)]
    if len(parts[0]) == 0:
        return split
    return Split(*parts)


def split_keeping_duplicates(split: Split, groups: np.ndarray | None, config: SplitConfig,
                             seed: int) -> Split:
    """``keep_duplicates_together``, unless so few rows are distinct that moving the copies would
    starve validation or test; then the distinct rows themselves are split (each with its copies)."""
    moved = keep_duplicates_together(split, groups)
    if groups is None or (len(moved.test) >= len(split.test) / 2 and len(moved.val) >= len(split.val) / 2):
        return moved
    positions = np.arange(len(groups))
    rest, test = _group_split(positions, groups, config.test, seed)
    if config.val == 0:
        return Split(np.sort(rest), np.array([], dtype=int), np.sort(test))
    train, val = _group_split(rest, groups[rest], config.val / (config.train + config.val), seed + 1)
    return Split(np.sort(train), np.sort(val), np.sort(test))


def _column(frame: pd.DataFrame, name: str | None, key: str) -> pd.Series:
    if name not in frame.columns:
        raise ConfigError(
            f"{key}: column {name!r} is not in the data.{did_you_mean(str(name), frame.columns)}"
            f" Columns: {', '.join(map(str, frame.columns))}"
        )
    return frame[name]


def _times(frame: pd.DataFrame, name: str | None) -> np.ndarray:
    """The time column's values in time order: dates written as text (07/01/2013 sorts after
    06/30/2014 as text) are read as days since 1970, unreadable ones last."""
    from fitwell.data.columns import is_text, to_days

    values = _column(frame, name, "split.time_column")
    if is_text(values) or pd.api.types.is_datetime64_any_dtype(values):
        days = to_days(values)
        if days.notna().sum() >= 0.95 * values.notna().sum():
            return days.fillna(np.inf).to_numpy()
    return values.to_numpy()


def _group_split(positions: np.ndarray, groups: np.ndarray, share: float, seed: int):
    if share == 0:
        return positions, positions[:0]
    if len(np.unique(groups)) < 2:
        raise DataError("group split needs at least two distinct groups in split.group_column")
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    keep, held = next(splitter.split(positions, groups=groups))
    return positions[keep], positions[held]


def cv_split(frame: pd.DataFrame, y: np.ndarray, config: SplitConfig, task: str, seed: int,
             folds: int, fold: int, repeat: int = 0) -> Split:
    """Fold ``fold`` of a k-fold split of all rows: that fold is the held-out ``test`` part; the
    other rows are divided into train and validation (for early stopping) as ``config`` says.

    Stratified for classification unless ``split.method`` says otherwise; grouped by
    ``split.group_column`` (groups never straddle train and held-out rows); forward-chaining for
    ``time`` (held-out rows always come after the training rows). Repeats reshuffle with
    ``seed + repeat``.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, TimeSeriesSplit

    method = resolve_method(config, task)
    positions = np.arange(len(frame))
    state = seed + 1000 * repeat
    if method == "time":
        order = np.argsort(_times(frame, config.time_column), kind="stable")
        rest, held = list(TimeSeriesSplit(n_splits=folds).split(order))[fold]
        rest, held = order[rest], order[held]
        n_val = max(1, round(len(rest) * config.val / (config.train + config.val))) if config.val else 0
        return Split(rest[:len(rest) - n_val], rest[len(rest) - n_val:], held)
    if method == "group":
        groups = _column(frame, config.group_column, "split.group_column").to_numpy()
        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=state)
        rest, held = list(splitter.split(positions, groups=groups))[fold]
    elif method == "stratified":
        try:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=state)
            rest, held = list(splitter.split(positions, y))[fold]
        except ValueError as err:
            raise DataError(f"stratified {folds}-fold split failed: {err}; use fewer --folds") from err
    else:
        rest, held = list(KFold(folds, shuffle=True, random_state=state).split(positions))[fold]
    if config.val == 0:
        return Split(np.sort(rest), np.array([], dtype=int), np.sort(held))
    share = config.val / (config.train + config.val)
    if method == "group":
        train, val = _group_split(rest, groups[rest], share, state + 1)
    else:
        strat = y[rest] if method == "stratified" else None
        train, val = train_test_split(rest, test_size=share, random_state=state + 1, stratify=strat)
    return Split(np.sort(train), np.sort(val), np.sort(held))
