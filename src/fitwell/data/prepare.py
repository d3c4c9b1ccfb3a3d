"""From a raw table to split, preprocessed tensors: the data half of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.config.resolve import resolve_defaults
from fitwell.config.schema import RunConfig, check_monitors
from fitwell.data.clean import CleanReport, clean_rows, type_columns
from fitwell.data.columns import ColumnPlan, infer_columns, infer_task
from fitwell.data.preprocess import Preprocessor
from fitwell.data.sources import check_unique_columns, read_table
from fitwell.data.split import (
    Split,
    cv_split,
    duplicate_groups,
    keep_duplicates_together,
    resolve_method,
    split_keeping_duplicates,
    split_rows,
    strata,
)
from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError, DataError, did_you_mean


@dataclass
class PreparedData:
    frame: pd.DataFrame  # cleaned rows, original columns
    plan: ColumnPlan
    task: str
    split: Split
    preprocessor: Preprocessor
    train: TensorData
    val: TensorData
    test: TensorData
    clean: CleanReport
    notes: list[str] = field(default_factory=list)
    raw: pd.DataFrame | None = None  # the table as loaded, before typing and cleaning (the audit reads it)
    resampled: dict | None = None  # class counts before/after train.resample
    synthetic: dict | None = None  # rows data.synthetic added to the training split
    out_of_core: dict | None = None  # a streamed table: rows, split sizes, cache (frame is the sample)
    sample_train: TensorData | None = None  # out of core: the sample's training and test tensors
    sample_test: TensorData | None = None

    def sizes(self) -> dict:
        """Rows of train / val / test: of the whole table when it was streamed."""
        return dict(self.out_of_core["split"]) if self.out_of_core else self.split.sizes()

    def resample(self, config: RunConfig) -> dict | None:
        """Apply ``train.resample`` to the training tensors (never validation or test)."""
        if config.train.resample is None:
            return None
        from fitwell.data.resample import resample_training

        self.train, self.resampled = resample_training(self.train, config.train.resample, self.task,
                                                       self.preprocessor.classes_, config.seed)
        return self.resampled

    def synthesize(self, config: RunConfig) -> dict | None:
        """Apply ``data.synthetic`` to the training tensors (never validation or test)."""
        if config.data.synthetic is None:
            return None
        from fitwell.data.synthetic import synthesize

        self.train, self.synthetic = synthesize(self.train, config.data.synthetic, self.task, config.augment,
                                                config.seed)
        return self.synthetic

    def merge_validation(self) -> PreparedData:
        """The same data with the validation rows moved into training (their order kept: train
        rows, then validation rows), for models that need no validation split of their own."""
        from dataclasses import replace

        split = Split(np.concatenate([self.split.train, self.split.val]), self.split.val[:0],
                      self.split.test)
        return replace(self, split=split, train=self.train.concat(self.val),
                       val=self.val.select(np.arange(0)))

    def change_training_rows(self, config: RunConfig) -> list[str]:
        """Apply ``train.resample`` and ``data.synthetic`` to the training rows; say what changed."""
        lines = []
        resampled = self.resample(config)
        if resampled is not None:
            lines.append(f"resampled the training split ({resampled['method']}): class counts"
                         f" {resampled['before']} -> {resampled['after']}")
        synthetic = self.synthesize(config)
        if synthetic is not None:
            lines.append(f"data.synthetic ({synthetic['method']}): added {synthetic['rows_added']} generated"
                         f" rows to the training split ({synthetic['rows_before']} ->"
                         f" {synthetic['rows_after']}); validation and test are untouched")
        return lines

    def summary(self) -> dict:
        return {
            "task": self.task, "target": self.plan.target,
            "rows": self.out_of_core["rows"] if self.out_of_core else len(self.frame),
            "split": self.sizes(), "columns": self.plan.to_dict(), "out_of_core": self.out_of_core,
            "classes": self.preprocessor.classes_, "notes": self.notes,
            "missing_target_rows": self.clean.missing_target_rows,
            "duplicate_rows": self.clean.duplicate_rows,
            "preprocessing": self.preprocessor.statistics(),
            "resampled": self.resampled, "synthetic": self.synthetic,
        }


def resolve_target(config: RunConfig, frame: pd.DataFrame) -> str:
    target = config.data.target
    if target is None:
        if "target" in frame.columns:
            return "target"
        if list(frame.columns) == ["image", "label"]:  # an image folder
            return "label"
        raise ConfigError(
            "data.target is not set; name the column to predict. Columns: "
            + ", ".join(map(str, frame.columns))
        )
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} (data.target) is not in the data.{did_you_mean(target, frame.columns)}"
            f" Columns: {', '.join(map(str, frame.columns))}"
        )
    return target


def load_frame(config: RunConfig, frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is not None:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(frame).__name__}")
        if len(frame) == 0:
            raise DataError("the DataFrame given as data has no rows")
        check_unique_columns(list(frame.columns), "the DataFrame given as data")
        return frame
    if not config.data.source:
        raise ConfigError("data.source is not set; give a CSV/Parquet/JSONL path or sklearn:<name>")
    return read_table(config.data.source)


def input_blocks(config: RunConfig, raw: pd.DataFrame) -> list:
    """Unfitted image / text / sequence blocks (of the config that ``resolve_defaults`` filled:
    an image folder source has its image block)."""
    from fitwell.data.inputs import build_inputs

    source = config.data.source
    folder = None
    if source and not source.startswith("sklearn:"):
        path = Path(source).resolve()
        folder = str(path if path.is_dir() else path.parent)
    blocks = build_inputs(config.data, folder)
    if not blocks and config.model.name in IMAGE_OR_TEXT_MODELS:
        raise ConfigError(f"model.name {config.model.name!r} needs an image, text or sequence input:"
                          " set data.image, data.text or data.sequence")
    return blocks


IMAGE_OR_TEXT_MODELS = ("cnn", "resnet", "rnn", "transformer", "minilm", "timm")


def class_labels(y: pd.Series) -> list:
    labels = list(pd.unique(y.dropna()))
    try:
        labels.sort()
    except TypeError:
        labels.sort(key=str)
    return [v.item() if isinstance(v, np.generic) else v for v in labels]


def sample_weights(column: pd.Series, name: str) -> np.ndarray:
    """Row weights from ``data.weight_column``: numbers, not missing, not negative."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = bad.idxmax()
        shown = column[row].item() if isinstance(column[row], np.generic) else column[row]
        raise DataError(f"data.weight_column {name!r}: row {row} holds {shown!r}; sample weights"
                        f" must be numbers >= 0 ({int(bad.sum())} bad rows)")
    return values.to_numpy(dtype=np.float32)


def refold(split: Split, labels: np.ndarray | None, fold: tuple[int, int] | None, merge_val: bool,
           seed: int) -> Split:
    """Re-divide train+validation: fold ``(k, i)`` of a (stratified) k-fold, or merged into train.
    The test rows never move."""
    if fold is None and not merge_val:
        return split
    pool = np.concatenate([split.train, split.val])
    if merge_val:
        return Split(np.sort(pool), np.array([], dtype=int), split.test)
    from sklearn.model_selection import KFold, StratifiedKFold

    k, i = fold
    if labels is not None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = list(splitter.split(pool, labels[pool]))
    else:
        parts = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(pool))
    train, val = parts[i]
    return Split(np.sort(pool[train]), np.sort(pool[val]), split.test)


def check_named_columns(config: RunConfig, raw: pd.DataFrame) -> None:
    """Every column the config names for a role (sensitive, weights) must be in the table."""
    for name in config.data.sensitive:
        if name not in raw.columns:
            raise ConfigError(f"data.sensitive: column {name!r} is not in the data."
                              f"{did_you_mean(name, raw.columns)}"
                              f" Columns: {', '.join(map(str, raw.columns))}")
    weight_column = config.data.weight_column
    if weight_column is not None and weight_column not in raw.columns:
        raise ConfigError(f"data.weight_column: column {weight_column!r} is not in the data."
                          f"{did_you_mean(weight_column, raw.columns)}")


def check_task_settings(config: RunConfig, task: str) -> None:
    """Watched metrics must be ones the loop logs for ``task`` (the one place this is checked)."""
    try:
        check_monitors(config, task)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if config.split.val == 0 and config.train.early_stopping.monitor.startswith("val_") \
            and config.train.early_stopping.enabled:
        raise ConfigError("train.early_stopping.monitor: split.val is 0, so no val_ metric is"
                          " logged; monitor train_loss or give split.val a share")


def split_tensors(preprocessor: Preprocessor, inputs: pd.DataFrame, y: pd.Series, weights, split: Split,
                  task: str) -> list[TensorData]:
    """Train, validation and test tensors through the fitted preprocessing."""
    parts: list[TensorData] = []
    for rows in (split.train, split.val, split.test):
        if len(rows) == 0:  # e.g. split.val: 0 (the train split comes first and is never empty)
            empty = {k: np.zeros((0, *v.shape[1:]), v.numpy().dtype) for k, v in parts[0].inputs.items()}
            parts.append(TensorData.from_numpy(np.zeros((0, preprocessor.num_numeric), np.float32),
                                               np.zeros((0, len(preprocessor.code_columns_)), np.int64),
                                               np.zeros(0, np.float32 if task == "regression" else np.int64),
                                               inputs=empty))
            continue
        features = preprocessor.transform(inputs.iloc[rows])
        target_values = preprocessor.encode_target(y.iloc[rows])
        parts.append(TensorData.from_numpy(features.numeric, features.codes, target_values,
                                           None if weights is None else weights[rows], features.inputs))
    return parts


def stratify_on(config: RunConfig, task: str, y: pd.Series, classes, note: Callable) -> np.ndarray:
    """The class codes a split stratifies on: classes too rare to stratify share a stratum
    (``strata``), and ``note`` names them."""
    codes = y.map({c: i for i, c in enumerate(classes)}).to_numpy()
    if resolve_method(config.split, task) != "stratified":
        return codes
    codes, rare = strata(codes)
    if len(rare):
        shown = ", ".join(str(classes[c]) for c in rare[:5]) + (", ..." if len(rare) > 5 else "")
        note(f"{len(rare)} classes with fewer than 3 rows ({shown}) are placed at random, not"
             " stratified: a class needs a row in train, validation and test to be stratified")
    return codes


def split_for(config: RunConfig, cleaned: pd.DataFrame, labels, strat, task: str, fold, merge_val: bool,
              cv, classes=None, raw: pd.DataFrame | None = None) -> Split:
    """The run's split of the cleaned rows (see ``prepare``); duplicates stay on one side.

    A duplicate is a row the table holds twice, every column alike (``raw``, the table as loaded):
    rows that differ only in a column the run dropped (a passenger's name, an order number) are
    different records that share their features, and keeping those together would move whole
    blocks of common rows out of the test split."""
    together = resolve_method(config.split, task) not in ("time", "group")  # those keep their order
    groups = duplicate_groups(whole_rows(cleaned, raw)) if together else None
    if cv is not None:
        split = cv_split(cleaned, labels, config.split, task, config.seed, *cv)
        return keep_duplicates_together(split, groups) if together else split
    split = split_rows(cleaned, labels, config.split, task, config.seed, names=classes)
    if together:
        split = split_keeping_duplicates(split, groups, config.split, config.seed)
    return refold(split, strat, fold, merge_val, config.seed)


def whole_rows(cleaned: pd.DataFrame, raw: pd.DataFrame | None) -> pd.DataFrame:
    """The table's own rows behind the cleaned ones, every column; the cleaned rows when the table's
    values cannot be hashed (lists in a JSONL cell)."""
    if raw is None or not cleaned.index.isin(raw.index).all():
        return cleaned
    rows = raw.loc[cleaned.index]
    try:
        pd.util.hash_pandas_object(rows, index=False)
    except TypeError:
        return cleaned
    return rows


def prepare(config: RunConfig, frame: pd.DataFrame | None = None,
            preprocessor: Preprocessor | None = None, fold: tuple[int, int] | None = None,
            merge_val: bool = False, cv: tuple[int, int, int] | None = None,
            fit_preprocessor: Callable | None = None) -> PreparedData:
    """Load, type, clean, split and preprocess (fitted on the training rows only).

    Args:
        config: the run config.
        frame: a DataFrame instead of ``data.source``.
        preprocessor: an already fitted one (resume); otherwise one is fitted here.
        fold: ``(k, i)``: train on fold i of a k-fold split of train+validation (tuning by CV).
        merge_val: train on train+validation with no validation rows (final retraining).
        cv: ``(folds, fold, repeat)``: fold ``fold`` of a k-fold over all rows is the held-out
            (test) part; the rest is split into train and validation.
        fit_preprocessor: ``(preprocessor, inputs, target)`` fitting it on the training rows
            instead of ``Preprocessor.fit`` (a private run's ``fitwell.privacy.preprocess``).
    """
    config = resolve_defaults(config)
    raw = load_frame(config, frame)
    target = resolve_target(config, raw)
    check_named_columns(config, raw)
    weight_column = config.data.weight_column
    blocks = input_blocks(config, raw) if preprocessor is None else preprocessor.inputs
    block_columns = [c for block in blocks for c in block.columns(raw)]
    drop = list(config.data.drop) + ([weight_column] if weight_column else [])
    plan = infer_columns(raw, target, config.data.columns, drop,
                         {c: f"{block.key} input" for block in blocks for c in block.columns(raw)})
    typing_notes: list[str] = []
    typed = type_columns(raw, plan, config.data.normalize_strings, typing_notes.append)
    keys = [c for c in (config.split.group_column, config.split.time_column, weight_column) if c]
    keys += [c for c in block_columns if c not in keys]
    extra = [c for c in keys if c not in typed.columns and c in raw.columns]
    combined = pd.concat([typed, raw[extra], raw[[target]]], axis=1)
    cleaned, report = clean_rows(combined, target, config.data.drop_duplicates)
    task = infer_task(cleaned[target], config.data.task, config.data.max_classes, target, typing_notes.append)
    check_task_settings(config, task)
    y = cleaned[target]
    classes = None if task == "regression" else class_labels(y)
    strat = None if classes is None else stratify_on(config, task, y, classes, typing_notes.append)
    labels = strat if strat is not None else y.to_numpy()
    split = split_for(config, cleaned, labels, strat, task, fold, merge_val, cv, classes, raw)
    inputs = cleaned[plan.inputs + [c for c in block_columns if c not in plan.inputs]]
    if preprocessor is None:
        preprocessor = Preprocessor(plan, config.preprocess, task, config.data.normalize_strings, blocks)
        fit = fit_preprocessor or (lambda pre, frame, target: pre.fit(frame, target))
        fit(preprocessor, inputs.iloc[split.train], y.iloc[split.train])  # private: public values + DP
        if classes is not None:
            preprocessor.set_classes(classes)
    weights = None if weight_column is None else sample_weights(cleaned[weight_column], weight_column)
    parts = split_tensors(preprocessor, inputs, y, weights, split, task)
    notes, clipped = plan.notes + typing_notes + report.notes, preprocessor.statistics().get("clipped", {})
    if clipped:
        notes.append(f"clipped {sum(clipped.values())} outlying training values in {len(clipped)} columns"
                     f" ({config.preprocess.outliers})")
    return PreparedData(cleaned, plan, task, split, preprocessor, *parts, clean=report, notes=notes, raw=raw)
