"""Tables larger than memory: a Parquet file or folder streamed in row groups into memory-mapped
tensor blocks, so that the loop index-slices the map as it slices tensors in memory.

What is fitted on what:

- column kinds, the task, the classes and every preprocessing statistic (medians, scales, clipping
  bounds, category vocabularies): on the training rows of a seeded sample of ``data.sample_rows``
  rows, read evenly from every row group -- the audit and the report read the same sample and say so;
- the split: every row of the table by a seeded hash of its position (train / validation / test in
  the configured shares; stratification and group / time splits need the whole table and are
  refused);
- the tensors: every row, one row group at a time, through the fitted preprocessing, appended to
  one file per block and split under ``<runs_dir>/.cache/<key>/`` (the key hashes the source's
  size and time, the data, preprocess and split settings and the seed, so a resumed run and a rerun
  reuse them).

Peak memory is a row group, one chunk of ``CHUNK_ROWS`` rows in conversion and the sample,
whatever the number of rows: the files' pages are the kernel's page cache, not the process's own
memory (``tests/data/test_out_of_core.py`` measures it against the in-memory path in a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fitwell.config.schema import RunConfig
from fitwell.data.clean import type_columns
from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError

PARQUET = (".parquet", ".pq")
BLOCKS = ("numeric", "codes", "target")
CHUNK_ROWS = 32_768


def parquet_files(source: str | Path) -> list[Path]:
    source = Path(source)
    return sorted(source.rglob("*.parquet")) if source.is_dir() else [source]


def row_groups(source: str | Path):
    """The table one row group at a time (a pyarrow Table each), files in name order. Read one by
    one rather than through a dataset scanner, whose read-ahead held 1.5 GB at 2M rows."""
    import pyarrow.parquet as pq

    for path in parquet_files(source):
        handle = pq.ParquetFile(path)
        for index in range(handle.num_row_groups):
            yield handle.read_row_group(index)


def chunks(source: str | Path, rows: int = CHUNK_ROWS):
    """The table in pieces of at most ``rows`` rows (a row group at a time, cut): what is
    converted and transformed at once, so that peak memory does not grow with the writer's
    row-group size (pyarrow's default is a million rows)."""
    for group in row_groups(source):
        yield from group.to_batches(max_chunksize=rows)


def count_rows(source: str | Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in parquet_files(source))


def streams(config: RunConfig, frame: pd.DataFrame | None) -> bool:
    """Whether this run streams its table (``data.out_of_core``; auto: a Parquet source whose
    uncompressed size exceeds ``data.memory_budget``)."""
    data = config.data
    setting = data.out_of_core
    source = Path(data.source) if data.source and not data.source.startswith("sklearn:") else None
    parquet = source is not None and (source.is_dir() or source.suffix.lower() in PARQUET)
    if setting is False or frame is not None or not parquet:
        if setting is True:
            given = "a DataFrame was given" if frame is not None else f"{data.source!r} is not one"
            raise ConfigError("data.out_of_core: true streams a Parquet file or folder given as"
                              f" data.source; {given}")
        return False
    if setting is True:
        return True
    return too_large(source, data.memory_budget)


def too_large(source: Path, budget_gib: float | None = None) -> bool:
    """A Parquet file or folder whose uncompressed size is over ``budget_gib`` (default a quarter
    of this machine's memory): ``data.out_of_core: auto`` streams it."""
    if not (source.is_dir() or source.suffix.lower() in PARQUET):
        return False
    return uncompressed_bytes(source) > (budget_gib or total_memory_gib() / 4) * 2**30


def total_memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 16.0


def uncompressed_bytes(source: Path) -> int:
    import pyarrow.parquet as pq

    total = 0
    for path in parquet_files(source):
        meta = pq.ParquetFile(path).metadata
        total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return total


def check_streamable(config: RunConfig, options: dict) -> None:
    """What a streamed run cannot do, refused by key with what to do instead."""
    problems = []
    if config.split.method not in ("auto", "random"):
        problems.append(f"split.method {config.split.method}: out of core the split is a seeded hash of"
                        " each row's position; use random (auto)")
    if config.data.drop_duplicates:
        problems.append("data.drop_duplicates: finding duplicates needs the whole table in memory")
    if config.data.synthetic is not None or config.train.resample is not None:
        problems.append("data.synthetic / train.resample: they rewrite the training rows in memory")
    if config.privacy is not None:
        problems.append("privacy: private training reads the table in memory")
    if config.data.image or config.data.text or config.data.sequence:
        problems.append("data.image / data.text / data.sequence: out of core streams tables only")
    if config.ensemble is not None:
        problems.append("ensemble (a preset's too): its gradient-boosting members read the table in memory;"
                        " train one network (no preset), or sample the table")
    if any(options.get(key) for key in ("fold", "merge_val", "cv")):
        problems.append("cross-validation and tuning folds: they re-split the table in memory")
    if problems:
        raise ConfigError("data.out_of_core: " + "; ".join(problems) + ". Or set data.out_of_core: false")


def read_sample(source: str | Path, rows: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded sample of ``rows`` rows (all when the table is smaller), indexed by each row's
    position in the table; and the table's row count."""
    total = count_rows(source)
    if total == 0:
        from fitwell.errors import DataError

        raise DataError(f"data.source {source}: the Parquet table has no rows")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(rows, total), replace=False))
    parts, start = [], 0
    for batch in row_groups(source):
        end = start + batch.num_rows
        low, high = np.searchsorted(chosen, [start, end])
        if high > low:
            part = batch.take(chosen[low:high] - start).to_pandas()
            part.index = chosen[low:high]
            parts.append(part)
        start = end
    return pd.concat(parts), total


def split_of(positions: np.ndarray, config: RunConfig) -> np.ndarray:
    """0 train, 1 validation, 2 test for each row position: a seeded hash, stable across runs."""
    with np.errstate(over="ignore"):  # a 64-bit mix (splitmix64's): wrapping is the point
        mixed = positions.astype(np.uint64) + np.uint64(config.seed) * np.uint64(0x9E3779B97F4A7C15)
        mixed = (mixed ^ (mixed >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(29)
    share = (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)
    train, val = config.split.train, config.split.val
    return np.where(share < train, 0, np.where(share < train + val, 1, 2))


def cache_key(config: RunConfig) -> str:
    stats = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)
             for path in parquet_files(config.data.source)]
    settings = [config.data.model_dump(mode="json"), config.preprocess.model_dump(mode="json"),
                config.split.model_dump(mode="json"), config.seed]
    text = json.dumps([stats, settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stream_tensors(config: RunConfig, prepared, say=None) -> tuple[list[TensorData], dict]:
    """Every row of the table through ``prepared``'s fitted preprocessing into memory-mapped
    train / validation / test blocks (written once, then reused); with what was done."""
    folder = Path(config.track.runs_dir) / ".cache" / cache_key(config)
    if not (folder / "blocks.json").exists():
        write_blocks(config, prepared, folder)
    layout = json.loads((folder / "blocks.json").read_text())
    parts = [open_part(folder, name, layout) for name in ("train", "val", "test")]
    info = {"rows": layout["rows"], "sample_rows": len(prepared.frame), "cache": str(folder),
            "split": {name: layout[name]["rows"] for name in ("train", "val", "test")},
            "missing_target_rows": layout["missing_target_rows"]}
    return parts, info


def write_blocks(config: RunConfig, prepared, folder: Path) -> None:
    """Stream the table into ``folder`` (a temporary folder renamed into place: a crash leaves
    nothing half-written, and several processes writing at once keep the first)."""
    pre, plan, target = prepared.preprocessor, prepared.plan, prepared.plan.target
    temporary = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
    temporary.mkdir(parents=True)
    handles = {(name, block): open(temporary / f"{name}.{block}.bin", "wb")
               for name in ("train", "val", "test") for block in BLOCKS}
    counts, dtypes, widths, missing, start = {"train": 0, "val": 0, "test": 0}, {}, {}, 0, 0
    try:
        for batch in chunks(config.data.source):
            raw = batch.to_pandas()
            raw.index = np.arange(start, start + len(raw))
            start += len(raw)
            keep = raw[target].notna().to_numpy()
            missing += int((~keep).sum())
            raw = raw[keep]
            if raw.empty:
                continue
            typed = type_columns(raw, plan, config.data.normalize_strings, lambda note: None)
            features = pre.transform(typed[plan.inputs])
            blocks = {"numeric": features.numeric, "codes": features.codes,
                      "target": pre.encode_target(raw[target])}
            where = split_of(raw.index.to_numpy(), config)
            for index, name in enumerate(("train", "val", "test")):
                rows = where == index
                counts[name] += int(rows.sum())
                for block, values in blocks.items():
                    chosen = np.ascontiguousarray(values[rows])
                    dtypes[block], widths[block] = str(chosen.dtype), chosen.shape[1:]
                    chosen.tofile(handles[(name, block)])  # no bytes copy
    finally:
        for handle in handles.values():
            handle.close()
    layout = {name: {"rows": counts[name]} for name in counts}
    layout.update(rows=start, missing_target_rows=missing, dtypes=dtypes,
                  widths={k: list(v) for k, v in widths.items()})
    (temporary / "blocks.json").write_text(json.dumps(layout))
    try:
        temporary.rename(folder)
    except OSError:  # another process of the run got there first: its blocks are the same
        shutil.rmtree(temporary, ignore_errors=True)


def open_part(folder: Path, name: str, layout: dict) -> TensorData:
    rows = layout[name]["rows"]
    tensors = {}
    for block in BLOCKS:
        shape = (rows, *layout["widths"].get(block, []))
        dtype = np.dtype(layout["dtypes"].get(block, "float32"))
        path = folder / f"{name}.{block}.bin"
        if rows == 0 or path.stat().st_size == 0:
            tensors[block] = torch.from_numpy(np.zeros(shape, dtype=dtype))
            continue
        tensors[block] = torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", shape=shape))
    return TensorData(tensors["numeric"], tensors["codes"], tensors["target"], out_of_core=True)


def prepare_streamed(config: RunConfig, frame: pd.DataFrame | None = None, preprocessor=None, **options):
    """``prepare`` for a table larger than memory: kinds, task and preprocessing from a seeded
    sample (which the audit and report read), then every row streamed into memory-mapped blocks."""
    from fitwell.data.prepare import prepare

    options.pop("fit_preprocessor", None)
    check_streamable(config, options)
    sample, total = read_sample(config.data.source, config.data.sample_rows, config.seed)
    prepared = prepare(config, sample, preprocessor=preprocessor)
    (train, val, test), info = stream_tensors(config, prepared)
    prepared.sample_train, prepared.sample_test = prepared.train, prepared.test
    prepared.train, prepared.val, prepared.test = train, val, test
    prepared.out_of_core = info
    prepared.notes.append(f"out of core: {total:,} rows streamed in row groups into memory-mapped blocks"
                          f" ({info['cache']}); column kinds, preprocessing statistics, the audit and the"
                          f" report's plots come from a seeded sample of {len(sample):,} rows")
    return prepared
